"""The code's shape, read from the source (no TensorFlow): sizes, one-way package imports, one home per file name.

ARCHITECTURE.md ("Packages") draws the graph these tests hold the code to.
"""
import ast
import glob
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
# The stage packages, lowest first: a package imports only the ones before it.
PACKAGES = ("core", "data", "train", "eval", "deploy", "study")
MAX_FLAT_MODULES = 8
# Each run-directory file name is spelled (as a string in code) in exactly one module.
FILE_NAMES = {"run_info.json": "slimflowers/core/run_dir.py", "results.jsonl": "slimflowers/core/run_dir.py",
              "best.json": "slimflowers/core/run_dir.py", "flags.txt": "slimflowers/core/run_dir.py",
              "export_report.json": "slimflowers/core/run_dir.py", "dataset.json": "datasets/records.py",
              "labels.txt": "datasets/records.py"}


def _sources(*patterns):
  return sorted(p for pattern in patterns for p in glob.glob(os.path.join(REPO, pattern), recursive=True))


CODE = _sources("slimflowers/**/*.py", "datasets/*.py", "nets/*.py", "*.py")


def _rel(path):
  return os.path.relpath(path, REPO)


def _tree(path):
  with open(path, encoding="utf-8") as f:
    return ast.parse(f.read(), path)


def _docstrings(tree):
  nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
  return {id(n.body[0].value) for n in nodes
          if n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def test_no_module_or_function_is_too_long():
  too_long = []
  for path in CODE:
    with open(path, encoding="utf-8") as f:
      lines = len(f.read().splitlines())
    if lines > MAX_MODULE_LINES:
      too_long.append(f"{_rel(path)}: {lines} lines")
    for node in ast.walk(_tree(path)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        length = node.end_lineno - node.lineno + 1
        if length > MAX_FUNCTION_LINES:
          too_long.append(f"{_rel(path)}:{node.lineno} {node.name}: {length} lines")
  assert not too_long, f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function: {too_long}"


def test_slimflowers_is_stage_packages_and_a_few_flat_modules():
  root = os.path.join(REPO, "slimflowers")
  packages = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, "__init__.py")))
  flat = sorted(n for n in os.listdir(root) if n.endswith(".py") and n != "__init__.py")
  assert packages == sorted(PACKAGES)
  assert len(flat) <= MAX_FLAT_MODULES, flat


def _imported_packages(tree):
  """The slimflowers packages a module imports (`from slimflowers.X import ...`, `import slimflowers.X`)."""
  found = set()
  for node in ast.walk(tree):
    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
        [a.name for a in node.names] if isinstance(node, ast.Import) else [])
    for name in names:
      parts = name.split(".")
      if parts[0] == "slimflowers" and len(parts) > 1 and parts[1] in PACKAGES:
        found.add(parts[1])
  return found


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_one_way(package):
  allowed = set(PACKAGES[:PACKAGES.index(package) + 1])
  wrong = {}
  for path in _sources(f"slimflowers/{package}/*.py"):
    above = _imported_packages(_tree(path)) - allowed
    if above:
      wrong[_rel(path)] = sorted(above)
  assert not wrong, f"slimflowers.{package} may import only {sorted(allowed)}: {wrong}"


def test_the_packages_below_slimflowers_import_only_core():
  """datasets and nets sit below slimflowers: they may use its core (errors, files), nothing that trains."""
  wrong = {_rel(p): sorted(_imported_packages(_tree(p)) - {"core"})
           for p in _sources("datasets/*.py", "nets/*.py")}
  assert not {k: v for k, v in wrong.items() if v}


def test_each_run_directory_file_name_is_spelled_in_one_module():
  where = {name: set() for name in FILE_NAMES}
  for path in CODE + _sources("bench/*.py"):
    tree = _tree(path)
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
      if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
        for name in FILE_NAMES:
          if name in node.value:
            where[name].add(_rel(path))
  assert where == {name: {home} for name, home in FILE_NAMES.items()}


def test_every_net_names_a_preprocessing_recipe():
  """nets/ registers each net with a recipe name; the recipes are slimflowers/data/preprocessing.py's RECIPES."""
  tree = _tree(os.path.join(REPO, "slimflowers/data/preprocessing.py"))
  (recipes,) = [n.value for n in tree.body if isinstance(n, ast.Assign) and
                any(isinstance(t, ast.Name) and t.id == "RECIPES" for t in n.targets)]
  known = {k.value for k in recipes.keys}
  named = {}
  for path in _sources("nets/*.py"):
    for node in ast.walk(_tree(path)):
      if isinstance(node, ast.keyword) and node.arg == "preprocessing" and isinstance(node.value, ast.Constant):
        named.setdefault(node.value.value, []).append(_rel(path))
  assert named and set(named) <= known, {k: v for k, v in named.items() if k not in known}


def test_the_console_knows_the_repository_root():
  """cli.REPO_DIR (the study's script paths, which log lines are the project's) is this checkout's root."""
  from slimflowers.core import cli  # pylint: disable=g-import-not-at-top  (standard library only)
  assert cli.REPO_DIR == REPO
