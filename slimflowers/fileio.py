"""Atomic file and directory writes: nothing half-written ever carries the final name.

    from slimflowers import fileio
    fileio.write_text_atomic("train_dir/flags.txt", text)

A writer creates a temporary sibling (same directory, so the rename is atomic on
POSIX), fsyncs it, then renames it over the final name. A kill at any moment
leaves either the old file or the new one, plus at worst a `*.tmp-*` leftover
that readers ignore. The readers below are the other half: they take what a
killed writer can leave (a missing file, a torn last line) without crashing.
"""
import contextlib
import json
import os
import shutil
import tempfile

from absl import logging


def _fsync_dir(path):
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path next to `path`; renames it to `path` on success."""
  directory = os.path.dirname(os.path.abspath(path)) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=directory)
  os.close(fd)
  try:
    yield tmp
    with open(tmp, "rb+") as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(directory)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def write_bytes_atomic(path, data):
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)


def write_text_atomic(path, text):
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj):
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_line(path, line):
  """Appends one line with a single write() and fsync (a line is all or nothing for readers that skip a torn tail)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a", encoding="utf-8") as f:
    f.write(line.rstrip("\n") + "\n")
    f.flush()
    os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_dir(path, replace=False):
  """Yields a temporary directory next to `path`; renames it to `path` on success.

  An existing `path` is an error unless `replace` (the caller has checked that the
  project wrote it); it is then replaced only after the new one is complete.
  """
  parent = os.path.dirname(os.path.abspath(path)) or "."
  if os.path.lexists(path) and not replace:
    raise FileExistsError(f"{path} already exists; refusing to replace it.")
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".tmp-", dir=parent)
  try:
    yield tmp
    if os.path.lexists(path):
      old = tempfile.mkdtemp(prefix=os.path.basename(path) + ".old-", dir=parent)
      os.rmdir(old)
      os.replace(path, old)
      os.replace(tmp, path)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, path)
    _fsync_dir(parent)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def read_json(path, strict=False):
  """The JSON object in `path`, or {} when the file is missing.

  An unreadable or non-object file gives {} too (a reader polling a file that is being
  replaced), or, with `strict`, a ValueError naming the file and the fix.
  """
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    if strict:
      raise ValueError(f"{path} is not valid JSON ({e}). Delete it or let the program that writes it "
                       "rewrite it.") from e
    return {}
  if not isinstance(data, dict):
    if strict:
      raise ValueError(f"{path} should hold a JSON object, found {type(data).__name__}.")
    return {}
  return data


def read_jsonl(path):
  """The JSON objects of `path`, one per line, in file order ([] when missing).

  A line that is not a JSON object (a torn write by a killed process) is skipped with a warning.
  """
  rows = []
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return rows
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except ValueError:
      row = None
    if not isinstance(row, dict):
      logging.warning("%s:%d is not a JSON object (torn write?); skipped: %r", path, number, line[:80])
      continue
    rows.append(row)
  return rows
