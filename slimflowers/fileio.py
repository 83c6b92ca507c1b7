"""Atomic file and directory writes: nothing half-written ever carries the final name.

    from slimflowers import fileio
    fileio.write_text_atomic("train_dir/flags.txt", text)

A writer creates a temporary sibling (same directory, so the rename is atomic on
POSIX), fsyncs it, then renames it over the final name. A kill at any moment
leaves either the old file or the new one, plus at worst a `*.tmp-*` leftover
that readers ignore.
"""
import contextlib
import json
import os
import shutil
import tempfile


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
def atomic_dir(path):
  """Yields a temporary directory next to `path`; renames it to `path` on success.

  An existing `path` is replaced only after the new one is complete.
  """
  parent = os.path.dirname(os.path.abspath(path)) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".tmp-", dir=parent)
  try:
    yield tmp
    if os.path.exists(path):
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
