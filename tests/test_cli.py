"""The command line as a user meets it: --help of every script, examples printed as written, a quiet console."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("train_image_classifier.py", "eval_image_classifier.py", "export_image_classifier.py",
           "predict_image_classifier.py", "download_and_convert_data.py")
# TensorFlow's C++ start-up lines, which a quiet console drops.
NOISE = ("cuInit", "oneDNN", "cpu_feature_guard", "cudart_stub")


def _start(*args):
  return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _finish(proc):
  out, err = proc.communicate(timeout=240)
  return proc.returncode, out, err


@pytest.fixture(scope="module")
def helps():
  """Every script's --help, and the study's, started at once (each imports TensorFlow)."""
  procs = {s: _start(s, "--help") for s in SCRIPTS}
  procs["study"] = _start("-m", "slimflowers.study", "--help")
  return {name: _finish(proc) for name, proc in procs.items()}


@pytest.mark.parametrize("script", SCRIPTS + ("study",))
def test_help_lists_the_scripts_own_flags_and_prints_examples_as_written(helps, script):
  _, out, _ = helps[script]  # (absl's --help exits with 1)
  assert "\nflags:\n" in out  # the script's own flags, not only "Try --helpfull"
  assert ("--model" if script == "predict_image_classifier.py" else "--dataset_dir") in out
  # A backslash-newline in an example is printed as written, not joined into one long line.
  examples = [line for line in out.splitlines() if line.lstrip().startswith("python ")]
  assert examples, out[:500]
  if script not in ("download_and_convert_data.py",):
    assert any(line.rstrip().endswith("\\") for line in examples), examples


def test_help_of_the_trainer_and_the_study_list_every_training_flag(helps):
  for script in ("train_image_classifier.py", "study"):
    out = helps[script][1]
    for flag in ("--learning_rate", "--optimizer", "--precise_bn_batches", "--max_number_of_steps"):
      assert f"  {flag}" in out, (script, flag)
  assert "  --models" in helps["study"][1]
  assert helps["train_image_classifier.py"][1].index("Key flags:") < helps["train_image_classifier.py"][1].index(
      "  --adam_beta1")


def test_python_m_nets_and_compare_are_quiet(tmp_path):
  (tmp_path / "not_a_run").mkdir()
  nets_proc = _start("-m", "nets", "--models=cifarnet")
  compare_proc = _start("-m", "slimflowers.compare", str(tmp_path / "not_a_run"))
  code, out, err = _finish(nets_proc)
  assert code == 0 and "cifarnet" in out
  assert not any(n in err + out for n in NOISE), err[-2000:]
  code, out, err = _finish(compare_proc)
  assert code == 2, err[-3000:]  # refused: README, "Exit codes"
  (line,) = [line for line in err.splitlines() if line.strip()]  # one line, no traceback
  assert ": error: " in line and "is not a training run" in line and "--train_dir" in line, line
  assert not any(n in err + out for n in NOISE), err[-2000:]
