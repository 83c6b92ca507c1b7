"""One writer per directory: a lock file held by a live process, refused to a second one, taken over when stale.

    with locks.DirLock(train_dir, "train_image_classifier.py"):
      ...   # a second trainer on the same --train_dir gets errors.Busy naming this process

The lock is `DIR/.lock`, a small JSON file: host, pid, the process's start time
(so a reused pid is not mistaken for the holder), the command, and a heartbeat time
the holder refreshes (`heartbeat()`). It is stale, and is taken over with a log
line, when its process no longer runs on this host, or when its heartbeat is older
than STALE_SECS (a holder on another machine that died, e.g. a preempted cluster job
restarted elsewhere). A live holder means a clear refusal (errors.Busy).

The directory is created if missing; if the holder leaves it empty (a command refused
after taking the lock: bad data, a wrong checkpoint), release() removes it again, with
the parents it created, so a refused command leaves no empty directory behind.

Local directories use O_CREAT|O_EXCL, which is atomic. Other filesystems have no
exclusive create: the lock is written, re-read after a moment, and kept only if it
still holds our token (write-then-verify; two starts within that moment can both
see their own token only on filesystems without read-after-write consistency).
"""
import json
import os
import socket
import sys
import time
import uuid

from absl import logging

from slimflowers.core import errors
from slimflowers.core import fileio

LOCK_NAME = ".lock"
STALE_SECS = 300.0          # a heartbeat older than this means the holder is gone
HEARTBEAT_SECS = 60.0       # how often a holder refreshes it (at most)
_VERIFY_DELAY_SECS = 0.2    # remote filesystems: wait, then re-read our token


def _process_start_time(pid):
  """The kernel's start time of `pid` (clock ticks since boot), or None where /proc is not available."""
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[19])  # field 22 of stat(5), counted after the ")" that ends the command name
  except (OSError, IndexError, ValueError):
    return None


def _alive(pid, start_time):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # exists, owned by someone else
  if start_time is not None:
    now = _process_start_time(pid)
    if now is not None and now != start_time:
      return False  # the pid was reused by another process
  return True


def describe(holder):
  started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("created", 0)))
  return (f"{holder.get('program', 'a process')} (pid {holder.get('pid')} on {holder.get('host')}, started "
          f"{started})")


def live_holder(directory):
  """The holder (the lock file's JSON) when a live process holds `directory`'s lock; None when there is no lock or
  a stale one. Reads only: nothing in `directory` is touched."""
  lock = DirLock(directory, "")
  holder = lock._read()  # pylint: disable=protected-access
  stale = lock._stale_reason(holder) if holder is not None else "no lock"  # pylint: disable=protected-access
  return holder if stale is None else None


class DirLock:
  """The lock on `directory` for `program`; a context manager (see the module doc)."""

  def __init__(self, directory, program, *, stale_secs=STALE_SECS):
    self.directory = directory
    self.program = program
    self.path = os.path.join(directory, LOCK_NAME)
    self.stale_secs = stale_secs
    self.token = uuid.uuid4().hex
    self.held = False
    self._last_beat = 0.0
    self._made_dirs = []  # the directories acquire() created, deepest first (removed again if left empty)

  def _content(self):
    now = time.time()
    return {"program": self.program, "host": socket.gethostname(), "pid": os.getpid(),
            "pid_start_time": _process_start_time(os.getpid()), "created": getattr(self, "_created", now),
            "heartbeat": now, "token": self.token, "command": " ".join(sys.argv)[:500]}

  def _read(self):
    try:
      return json.loads(fileio.read_text(self.path))
    except (OSError, ValueError, fileio._not_found_error()):  # pylint: disable=protected-access
      return None

  def _stale_reason(self, holder):
    if not isinstance(holder, dict):
      return "unreadable lock file"
    age = time.time() - float(holder.get("heartbeat", 0))
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
      if not _alive(holder["pid"], holder.get("pid_start_time")):
        return f"process {holder['pid']} no longer runs on this host"
      return None
    if age > self.stale_secs:
      return f"no heartbeat for {age:.0f} s"
    return None

  def _try_create(self):
    self._created = time.time()
    data = json.dumps(self._content(), sort_keys=True).encode("utf-8")
    if fileio.is_local(self.path):
      try:
        fd = os.open(fileio.local_path(self.path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
      except FileExistsError:
        return False
      try:
        os.write(fd, data)
        os.fsync(fd)
      finally:
        os.close(fd)
      return True
    if fileio.exists(self.path):
      return False
    fileio.write_bytes_atomic(self.path, data)
    time.sleep(_VERIFY_DELAY_SECS)
    holder = self._read()
    return isinstance(holder, dict) and holder.get("token") == self.token

  def _missing_dirs(self):
    """`directory` and its missing parents, deepest first (local paths only; [] when it exists)."""
    if not fileio.is_local(self.directory):
      return []
    missing, current = [], fileio.abspath(self.directory)
    while not os.path.lexists(current) and os.path.dirname(current) != current:
      missing.append(current)
      current = os.path.dirname(current)
    return missing

  def _remove_created_if_empty(self):
    for directory in self._made_dirs:
      try:
        os.rmdir(directory)  # only ever removes an empty directory
      except OSError:
        break
    self._made_dirs = []

  def acquire(self):
    self._made_dirs = self._missing_dirs()
    try:
      fileio.makedirs(self.directory)
    except (NotADirectoryError, FileExistsError) as e:
      raise errors.BadValue(f"{self.directory} cannot be created: part of that path is a file ({e.filename or e}). "
                            "Pass a directory path.") from e
    for _ in range(3):
      if self._try_create():
        self.held = True
        self._last_beat = time.time()
        return self
      holder = self._read()
      reason = self._stale_reason(holder)
      if reason is None:
        raise errors.Busy(
            f"{self.directory} is in use by {describe(holder)}: {holder.get('command', '')!s}. Wait for it to "
            f"finish or stop it, or use another directory. (If that process is gone, delete {self.path}.)")
      logging.warning("Taking over the stale lock %s of %s: %s.", self.path,
                      describe(holder) if isinstance(holder, dict) else "an unknown process", reason)
      fileio.remove(self.path)
    raise errors.Busy(f"Could not take the lock {self.path}: other processes keep taking it. Is the same "
                      "command running several times?")

  def heartbeat(self, force=False):
    """Refreshes the heartbeat (at most every HEARTBEAT_SECS unless `force`); call it from long loops."""
    if not self.held or (not force and time.time() - self._last_beat < HEARTBEAT_SECS):
      return
    holder = self._read()
    if isinstance(holder, dict) and holder.get("token") not in (None, self.token):
      logging.warning("The lock %s was taken over by %s; this process no longer holds it.", self.path,
                      describe(holder))
      self.held = False
      return
    fileio.write_json_atomic(self.path, self._content())
    self._last_beat = time.time()

  def release(self):
    if not self.held:
      return
    holder = self._read()
    if not isinstance(holder, dict) or holder.get("token") == self.token:
      fileio.remove(self.path)
    self.held = False
    self._remove_created_if_empty()

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
