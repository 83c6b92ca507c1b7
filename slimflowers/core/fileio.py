"""The project's own files (run directories, dataset metadata, exports, reports) are read and written here: local
paths, file:// URLs, and any TensorFlow filesystem.

    from slimflowers.core import fileio
    fileio.write_text_atomic("gs://bucket/runs/x/flags.txt", text)   # or a local path, or ram://...
    rows = fileio.read_jsonl("runs/x/eval_validation/results.jsonl")

Local paths (and `file://` URLs, stripped to the path) use the operating system
directly: a writer creates a temporary sibling, fsyncs it and renames it over the
final name (atomic on POSIX), so a kill at any moment leaves the old file or the
new one, plus at worst a `*.tmp-*` leftover that readers ignore and `remove_leftovers`
cleans. Written files and directories get the usual permissions of the umask
(temporary files are created private, then opened up before the rename).

Other schemes (gs://, s3://, hdfs://, ram://, ...) go through `tf.io.gfile`, imported
only then. Object stores have no atomic rename: a write goes to a temporary name,
is renamed (copied) over the final name and read back to verify it, so a reader
sees the old or the new content but a crash can leave a `*.tmp-*` object behind.

The readers are the other half: they take what a killed writer can leave (a missing
file, a torn last line) without crashing.

What does not go through here, and why (one line each):
- checkpoints (core/checkpoints.py, eval/outputs.py): TensorFlow writes them; tf.io.gfile lists and reads them.
- lock files (core/locks.py): created with O_EXCL, which an atomic rename cannot give.
- TFRecord shards (datasets/conversion.py): tf.io.TFRecordWriter into a staging directory, then moved here.
- source images and user files (datasets/, deploy/predict.py): opened non-blocking, so a FIFO cannot hang a read.
- the study's child logs (study/children.py): appended as the children print, not replaced.
- synthetic_flowers' generated source tree (datasets/synthetic_flowers.py): plain local files, like a user's photos.
- the SavedModel probe's scratch files (deploy/verification.py): a private temporary directory, removed after.
- directory listings and sizes (deploy/export_files.py, data/input_pipeline.py): tf.io.gfile, read-only.
"""
import contextlib
import fnmatch
import json
import os
import re
import shutil
import tempfile
import uuid

from absl import logging

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK
TMP_MARK = ".tmp-"
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


# ----------------------------------------------------------------------------------------------------------------------
# Paths


def is_local(path):
  """True for plain paths and file:// URLs (the operating system's files)."""
  path = os.fspath(path)
  return not _SCHEME.match(path) or path.startswith("file://")


def local_path(path):
  """A plain path for a local path or file:// URL."""
  path = os.fspath(path)
  return path[len("file://"):] if path.startswith("file://") else path


def abspath(path):
  """An absolute local path (with ~ expanded), or the URL as given."""
  path = os.fspath(path)
  if not is_local(path):
    return path.rstrip("/")
  return os.path.abspath(os.path.expanduser(local_path(path)))


def blocking_file(path):
  """The first existing non-directory on the way to local `path` (itself included), or None (also for URLs)."""
  if not is_local(path):
    return None
  current = abspath(path)
  chain = []
  while True:
    chain.append(current)
    parent = os.path.dirname(current)
    if parent == current:
      break
    current = parent
  for candidate in reversed(chain):
    if os.path.lexists(candidate) and not os.path.isdir(candidate):
      return candidate
  return None


def check_directory_flag(flag, path):
  """Raises errors.BadValue when `path` (the value of --`flag`) is, or lies below, a file."""
  from slimflowers.core import errors  # pylint: disable=g-import-not-at-top
  bad = blocking_file(path)
  if bad is None:
    return
  if bad == abspath(path):
    raise errors.BadValue(f"--{flag}={path} is a file, not a directory. Pass a directory (it is created if "
                          "missing).")
  raise errors.BadValue(f"--{flag}={path} is not a directory path: {bad} is a file. Pass a directory (it is "
                        "created if missing).")


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def exists(path):
  return os.path.lexists(local_path(path)) if is_local(path) else _gfile().exists(path)


def isdir(path):
  return os.path.isdir(local_path(path)) if is_local(path) else _gfile().isdir(path)


def isfile(path):
  if is_local(path):
    return os.path.isfile(local_path(path))
  return _gfile().exists(path) and not _gfile().isdir(path)


def listdir(path):
  if is_local(path):
    return sorted(os.listdir(local_path(path)))
  return sorted(name.rstrip("/") for name in _gfile().listdir(path))


def glob(pattern):
  if is_local(pattern):
    import glob as glob_lib  # pylint: disable=g-import-not-at-top
    return sorted(glob_lib.glob(local_path(pattern)))
  return sorted(_gfile().glob(pattern))


def makedirs(path):
  if is_local(path):
    os.makedirs(local_path(path), mode=0o777, exist_ok=True)
  else:
    _gfile().makedirs(path)


def remove(path):
  """Removes a file; a missing one is fine."""
  try:
    if is_local(path):
      os.remove(local_path(path))
    else:
      _gfile().remove(path)
  except (FileNotFoundError, _not_found_error()):
    pass


def rmtree(path):
  """Removes a directory tree the project wrote; a missing one is fine."""
  if is_local(path):
    shutil.rmtree(local_path(path), ignore_errors=True)
  elif _gfile().exists(path):
    _gfile().rmtree(path)


def rename(src, dst, overwrite=True):
  if is_local(src) and is_local(dst):
    if overwrite:
      os.replace(local_path(src), local_path(dst))
    else:
      os.rename(local_path(src), local_path(dst))
  else:
    _gfile().rename(src, dst, overwrite=overwrite)


def copy(src, dst):
  if is_local(src) and is_local(dst):
    shutil.copyfile(local_path(src), local_path(dst))
  else:
    _gfile().copy(src, dst, overwrite=True)


def size(path):
  return os.path.getsize(local_path(path)) if is_local(path) else _gfile().stat(path).length


def _not_found_error():
  if "tensorflow" not in __import__("sys").modules:
    return FileNotFoundError
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.errors.NotFoundError


# ----------------------------------------------------------------------------------------------------------------------
# Reading


def read_bytes(path):
  if is_local(path):
    with open(local_path(path), "rb") as f:
      return f.read()
  with _gfile().GFile(path, "rb") as f:
    return f.read()


def read_text(path):
  return read_bytes(path).decode("utf-8")


def read_json(path, strict=False):
  """The JSON object in `path`, or {} when the file is missing.

  An unreadable or non-object file gives {} too (a reader polling a file that is being
  replaced), or, with `strict`, a ValueError naming the file and the fix.
  """
  try:
    data = json.loads(read_text(path))
  except (FileNotFoundError, _not_found_error()):
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
    lines = read_text(path).splitlines()
  except (FileNotFoundError, _not_found_error()):
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


# ----------------------------------------------------------------------------------------------------------------------
# Writing


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


def tmp_name(path):
  """A unique temporary sibling of `path` (what `remove_leftovers` recognizes)."""
  return f"{path}{TMP_MARK}{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def atomic_path(path):
  """Yields a local temporary path to write; on success it becomes `path` (local or remote)."""
  if is_local(path):
    path = local_path(path)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + TMP_MARK, dir=directory)
    os.close(fd)
    try:
      yield tmp
      with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
      os.chmod(tmp, FILE_MODE)
      os.replace(tmp, path)
      _fsync_dir(directory)
    except BaseException:
      with contextlib.suppress(OSError):
        os.remove(tmp)
      raise
    return
  with tempfile.TemporaryDirectory() as local_dir:
    tmp = os.path.join(local_dir, os.path.basename(path))
    yield tmp
    with open(tmp, "rb") as f:
      _write_remote(path, f.read())


def _write_remote(path, data):
  """Write to a temporary object, rename over `path`, read back to verify (no atomic rename on object stores)."""
  gfile = _gfile()
  parent = os.path.dirname(path)
  if parent and not gfile.exists(parent):
    gfile.makedirs(parent)
  tmp = tmp_name(path)
  try:
    with gfile.GFile(tmp, "wb") as f:
      f.write(data)
    gfile.rename(tmp, path, overwrite=True)
  finally:
    if gfile.exists(tmp):
      gfile.remove(tmp)
  with gfile.GFile(path, "rb") as f:
    if f.read() != data:
      raise OSError(f"{path}: the content read back differs from what was written (concurrent writer?).")


def write_bytes_atomic(path, data):
  if not is_local(path):
    _write_remote(path, data)
    return
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)


def write_text_atomic(path, text):
  write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj):
  write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def append_line(path, line):
  """Appends one line with a single write() and fsync (a line is all or nothing for readers that skip a torn tail).

  A torn last line left by a killed writer is terminated first, so the new line stands on its own.
  On filesystems without append (object stores) the file is rewritten atomically.
  """
  data = (line.rstrip("\n") + "\n").encode("utf-8")
  if not is_local(path):
    try:
      old = read_bytes(path)
    except (FileNotFoundError, _not_found_error()):
      old = b""
    if old and not old.endswith(b"\n"):
      old += b"\n"
    _write_remote(path, old + data)
    return
  path = local_path(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
  try:
    end = os.lseek(fd, 0, os.SEEK_END)
    if end and os.pread(fd, 1, end - 1) != b"\n":
      data = b"\n" + data
    os.write(fd, data)
    os.fsync(fd)
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_dir(path, replace=False):
  """Yields a temporary local directory next to `path`; renames it to `path` on success.

  An existing `path` is an error unless `replace` (the caller has checked that the
  project wrote it); it is then replaced only after the new one is complete.
  """
  path = local_path(path)
  parent = os.path.dirname(os.path.abspath(path)) or "."
  if os.path.lexists(path) and not replace:
    raise FileExistsError(f"{path} already exists; refusing to replace it.")
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + TMP_MARK, dir=parent)
  try:
    yield tmp
    os.chmod(tmp, DIR_MODE)
    if os.path.lexists(path):
      old = tmp_name(path)
      os.replace(path, old)
      os.replace(tmp, path)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, path)
    _fsync_dir(parent)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def remove_leftovers(directory, patterns=("*" + TMP_MARK + "*",), what="a killed run"):
  """Removes entries of `directory` matching `patterns` (names the project gives its temporary files).

  Call it only while holding the directory's lock (slimflowers/core/locks.py): then no live
  writer of ours can own them. Returns the names removed; logs one line if any.
  """
  if not isdir(directory):
    return []
  removed = []
  for name in listdir(directory):
    if any(fnmatch.fnmatchcase(name, p) for p in patterns):
      path = os.path.join(directory, name)
      if isdir(path):
        rmtree(path)
      else:
        remove(path)
      removed.append(name)
  if removed:
    logging.warning("Removed %d leftover(s) of %s in %s: %s", len(removed), what, directory,
                    ", ".join(removed[:5]) + (" ..." if len(removed) > 5 else ""))
  return removed
