"""Child processes for the study and the demo: started in their own process group, streamed, stopped cleanly.

    supervisor = children.Supervisor(out=sys.stdout)
    trainer = supervisor.start("mobilenet train", [python, "train_image_classifier.py", ...], "runs/x/train.log")
    supervisor.wait("mobilenet", [trainer])      # the first failure stops the others and raises ChildFailed

Each child's stdout -- the project's own lines (slimflowers/core/cli.py) -- is shown on the
console with a `[label]` prefix and appended to its log file; its stderr -- TensorFlow's
and other libraries' lines, in full, since children run verbose -- goes to the log file
only (also to the console with `--verbosity=1`). The supervisor knows which children are
alive, so an interrupt (StopOnSignals) or an error stops exactly those: SIGTERM to each
process group, SIGKILL after a grace period.
"""
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

from slimflowers.core import cli
from slimflowers.core import errors

STOP_GRACE_SECS = 20
FAILURE_TAIL_LINES = 12


class ChildFailed(errors.UserError, RuntimeError):
  """A child exited with an error; the message names it, its command, its log and its last lines."""
  exit_code = 1


class Interrupted(Exception):
  """SIGINT/SIGTERM arrived; the children have been (or are being) stopped."""

  def __init__(self, signum):
    super().__init__(f"interrupted by {signal.Signals(signum).name}")
    self.signum = signum


@dataclasses.dataclass(eq=False)
class Child:
  """One subprocess, its own process group, its output streamed to the console and a log file."""
  label: str
  cmd: list
  log_path: str
  proc: subprocess.Popen = None
  threads: tuple = ()
  tail: list = dataclasses.field(default_factory=list)  # the last stderr lines, for a failure message
  started: float = 0.0

  def describe(self):
    return f"[{self.label}] command: {shlex.join(self.cmd)}\n  log: {self.log_path}"


def child_env(extra=None):
  env = dict(os.environ)
  env["PYTHONUNBUFFERED"] = "1"      # lines appear as they are written
  env["SLIMFLOWERS_VERBOSE"] = "1"   # full detail in the log file; the console shows stdout only
  env.update(extra or {})
  return env


class Closed(RuntimeError):
  """A child was to be started after the supervisor began stopping everything (another model failed)."""


class Supervisor:
  """Starts children, streams them, waits for them, and stops whichever are still alive."""

  def __init__(self, out=None, echo_stderr=None, name="study"):
    self.out = out or sys.stdout
    self.name = name
    self.echo_stderr = cli.VERBOSE if echo_stderr is None else echo_stderr
    self.live = set()  # started and not yet reaped: what an interrupt must stop
    self.durations = {}  # label -> seconds from start to exit, summed over starts (the demo prints them)
    self.closed = False  # set by close(): no child starts any more (models run side by side, one failed)
    self._lock = threading.Lock()

  def say(self, message, out=None):
    with self._lock:
      print(f"[{self.name}] {message}", file=out or self.out, flush=True)

  def _pump(self, child, stream, log, to_console):
    prefix = f"[{child.label}] "
    for raw in iter(stream.readline, b""):
      line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
      with self._lock:
        log.write(raw)
        log.flush()
        if not to_console:
          child.tail = (child.tail + [line])[-FAILURE_TAIL_LINES:]
        if to_console or self.echo_stderr:
          self.out.write(prefix + line + "\n")
          self.out.flush()

  def start(self, label, cmd, log_path, env=None):
    """Starts `cmd` in its own process group (so Ctrl-C reaches only the study, which stops it cleanly).

    `env`: variables added to the child's environment. Raises Closed after close().
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    child = Child(label=label, cmd=list(cmd), log_path=log_path, started=time.monotonic())
    log = open(log_path, "ab")  # pylint: disable=consider-using-with  (closed by the last pump)
    log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(child.cmd)}\n".encode())
    log.flush()
    with self._lock:  # close() sees every child started before it, and none starts after it
      if self.closed:
        log.close()
        raise Closed(f"not starting {label}: the study is stopping")
      child.proc = subprocess.Popen(child.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, env=child_env(env), start_new_session=True)
      self.live.add(child)
    threads = [threading.Thread(target=self._pump, args=(child, child.proc.stdout, log, True), daemon=True),
               threading.Thread(target=self._pump, args=(child, child.proc.stderr, log, False), daemon=True)]
    for t in threads:
      t.start()
    closer = threading.Thread(target=lambda: ([t.join() for t in threads], log.close()), daemon=True)
    closer.start()
    child.threads = tuple(threads) + (closer,)
    return child

  def _reap(self, child, timeout=10):
    for t in child.threads:
      t.join(timeout=timeout)
    with self._lock:  # several threads may reap the same child (models side by side)
      if child in self.live:
        self.durations[child.label] = self.durations.get(child.label, 0.0) + time.monotonic() - child.started
      self.live.discard(child)

  def close(self):
    """Stops every live child and refuses new ones (Closed): the end of a study whose models run side by side."""
    with self._lock:
      self.closed = True
    self.stop()

  def stop(self, children=None, grace_secs=STOP_GRACE_SECS):
    """SIGTERM to each running child's process group, then SIGKILL to whatever is left after `grace_secs`."""
    with self._lock:
      children = list(self.live if children is None else children)
    running = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for child in running:
      self.say(f"stopping {child.label} (pid {child.proc.pid})")
      try:
        os.killpg(child.proc.pid, signal.SIGTERM)
      except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_secs
    for child in running:
      try:
        child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        self.say(f"{child.label} ignored SIGTERM for {grace_secs}s; killing it")
        try:
          os.killpg(child.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
          pass
        child.proc.wait()
    for child in children:
      self._reap(child, timeout=5)

  def failure(self, name, child):
    tail = "\n    ".join(child.tail) if child.tail else "(no output on stderr)"
    error = ChildFailed(f"{name}: {child.label} failed with exit code {child.proc.returncode}.\n"
                       f"  command: {shlex.join(child.cmd)}\n  log: {child.log_path}\n  last lines:\n    {tail}\n"
                       "Fix the cause and run the same command again: finished work is kept, the rest resumes.")
    error.returncode = child.proc.returncode
    return error

  def wait(self, name, children, poll_secs=0.5):
    """Waits for all `children`; the first failure stops the others and raises ChildFailed.

    A child that exits cleanly early (an evaluator that timed out) leaves the
    others running; the caller checks what is missing afterwards.
    """
    try:
      while True:
        alive = False
        for child in children:
          code = child.proc.poll()
          if code is None:
            alive = True
          elif code != 0:
            self._reap(child)
            self.stop(children)
            raise self.failure(name, child)
        if not alive:
          break
        time.sleep(poll_secs)
      for child in children:
        self._reap(child)
    finally:
      self.stop(children)  # no-op unless leaving by an exception (Interrupted, ChildFailed)


class StopOnSignals:
  """Turns the first SIGINT/SIGTERM into Interrupted in the main thread; later ones wait for the cleanup."""

  def __init__(self, say=None):
    self.say, self.previous, self.received = say or (lambda m: print(m, flush=True)), {}, None

  def _handle(self, signum, unused_frame):
    if self.received is not None:
      self.say(f"{signal.Signals(signum).name} again: still stopping the children, please wait")
      return
    self.received = signum
    raise Interrupted(signum)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self.previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self.previous.items():
      signal.signal(sig, handler)


def exit_on_interrupt(fn, name, stopped):
  """Runs fn() under StopOnSignals and returns its result; on SIGINT/SIGTERM (its children already stopped)
  prints "[name] interrupted by SIGINT: <stopped>" to stderr and exits with 128 + the signal number."""
  try:
    with StopOnSignals():
      return fn()
  except Interrupted as e:
    print(f"[{name}] {e}: {stopped}", file=sys.stderr)
    sys.exit(128 + e.signum)
