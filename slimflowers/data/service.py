"""The tf.data service: move the training input pipeline's decoding and augmentation to other processes or machines.

    python -m slimflowers.data_service --port=5050 --workers=2 --expose_to_network     # a dispatcher, two workers
    python -m slimflowers.data_service --dispatcher=host0:5050 --workers=4 --expose_to_network   # more, elsewhere
    # 12:00:00 tf.data service: dispatcher grpc://localhost:5050, 2 worker(s) on this machine; Ctrl-C stops them
    python train_image_classifier.py ... --tf_data_service=grpc://host0:5050

When the input pipeline, not the accelerator, is the limit (many GPUs, few CPU cores per
host), the trainer sends its pipeline -- reading the shards, decoding, augmenting, batching --
to the service's workers and only receives finished batches (`distributed_epoch`: the
shards are split among the workers; a job name per run and restart step). Workers read
the dataset directory themselves: it must be a path every machine can read (a shared disk,
gs://).

Exposure (README, "What is safe"): TensorFlow 2.20's dispatcher and worker servers listen on every
network interface ([::]:PORT; DispatcherConfig and WorkerConfig take a port, no address) and
authenticate no client, and a client sends dataset graphs that the workers run: anyone who reaches
the ports can read and write files as the worker's user. So the program refuses to start without
--expose_to_network, and the service belongs inside a private network only.

A trainer never hangs on it (Watchdog): a dispatcher that does not answer at start-up is an error
after --tf_data_service_timeout_secs; one that stops answering mid-training makes the trainer save,
say so and exit 1 after that long; SIGTERM while it waits saves and exits 42.

What this changes (README, "Several machines"): batches are no longer a pure function of
the element index, because the service hands out elements in whatever order its workers
produce them, so a resumed run is not bit-identical to an uninterrupted one and two runs
with the same seed differ. What is kept: every record is seen once per epoch of the job, and
each image's augmentation is still drawn with TF-Slim's recipe from seeded stateless ops.
"""
import hashlib
import os
import select
import signal
import socket
import sys
import threading
import time

from absl import app
from absl import flags
from absl import logging

from slimflowers.core import errors

FLAGS = flags.FLAGS
EXPOSURE = ("the dispatcher and every worker listen on all network interfaces (TensorFlow 2.20's servers take no "
            "bind address) and authenticate no one: whoever reaches their ports can run dataset graphs in a worker "
            "with this user's rights, reading and writing its files")


def start(port=0, num_workers=1, dispatcher=None):
  """Starts a dispatcher on `port` (unless `dispatcher`, host:port, names a running one) and `num_workers` workers.

  Returns (dispatcher address "grpc://host:port", dispatcher server or None, [worker servers]). The servers
  run in background threads of this process until it exits (or `.stop()`).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (after cli has quieted it, when run as a script)
  if num_workers < 0:
    raise errors.BadValue(f"--workers={num_workers} must be >= 0.")
  service = tf.data.experimental.service
  server = None
  if dispatcher is None:
    server = service.DispatchServer(service.DispatcherConfig(port=port))
    address = server.target.removeprefix("grpc://")
  else:
    address = dispatcher.removeprefix("grpc://")
  workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address)) for _ in range(num_workers)]
  return f"grpc://{address}", server, workers


def job_name(train_dir, start_step):
  """The same on every worker of a run and new for each restart step: a resumed run starts a fresh job.

  (Re-using a job name would continue the old job and lose the batches its dead consumer held.)
  """
  digest = hashlib.sha1(str(train_dir).encode("utf-8")).hexdigest()[:10]
  return f"slimflowers_{digest}_step{start_step}"


def distribute(dataset, service, name):
  """`dataset` (finished batches) processed by the service at `service` under job `name`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return dataset.apply(tf.data.experimental.service.distribute(
      processing_mode="distributed_epoch", service=service, job_name=name))


# ----------------------------------------------------------------------------------------------------------------------
# The trainer's side: a service that does not answer is an error within a bounded time, never a hang


def host_port(address):
  """("host", port) of "grpc://host:port", "host:port" or "[::1]:port"."""
  hostport = address.split("://", 1)[-1].rstrip("/")
  host, _, port = hostport.rpartition(":")
  if not host or not port.isdigit():
    raise errors.BadValue(f"--tf_data_service={address}: expected grpc://HOST:PORT (python -m slimflowers.data_service "
                          "prints it).")
  return host.strip("[]"), int(port)


def reachable(address, timeout_secs=2.0):
  """True when something accepts a TCP connection at the dispatcher's address (the probe: connect, close)."""
  try:
    socket.create_connection(host_port(address), timeout=timeout_secs).close()
    return True
  except OSError:
    return False


def wait_until_reachable(address, timeout_secs, clock=time.monotonic):
  """Returns once the dispatcher at `address` accepts connections; errors.BadValue after `timeout_secs` without."""
  host_port(address)
  deadline = clock() + timeout_secs
  warned = False
  while not reachable(address, min(5.0, max(0.1, deadline - clock()))):
    if clock() >= deadline:
      raise errors.BadValue(
          f"--tf_data_service={address}: nothing answers there (waited {timeout_secs:g} s, "
          "--tf_data_service_timeout_secs). Start the service first (python -m slimflowers.data_service "
          "--port=PORT --expose_to_network), or fix the address.")
    if not warned:
      logging.warning("Nothing answers at %s yet: waiting up to %g s for the tf.data service "
                      "(--tf_data_service_timeout_secs).", address, timeout_secs)
      warned = True
    time.sleep(min(1.0, max(0.0, deadline - clock())))


class Watchdog:
  """Watches the dispatcher while training reads from it; a context manager.

  The trainer's main thread blocks inside TensorFlow when the service dies (its client retries forever),
  where neither a timeout nor a Python signal handler can reach it. This thread probes the dispatcher's
  port every few seconds and sees SIGTERM/SIGINT through signal.set_wakeup_fd (written by the C-level
  handler even while the main thread is blocked). It calls `stop(message, exit_code)` -- which saves a
  checkpoint, says so and ends the process -- once:
  - the dispatcher has not answered for `timeout_secs` (exit 1: restart the service, run the command again);
  - a stop signal arrived and the training loop cannot act on it: the dispatcher does not answer, or no
    loop of steps ended within `timeout_secs` after the signal (exit 42, preempted: run it again).
  `progress` is the Orbit train action that tells it a loop of steps ended.
  """

  def __init__(self, address, timeout_secs, stop, *, interval_secs=None, clock=time.monotonic):
    self.address, self.timeout, self.stop, self.clock = address, float(timeout_secs), stop, clock
    self.interval = interval_secs or min(5.0, max(0.5, self.timeout / 4))
    self.last_progress = clock()
    self._done = threading.Event()
    self._thread = None
    self._pipe = None
    self._previous_fd = None

  def progress(self, unused_output=None):
    self.last_progress = self.clock()

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._pipe = os.pipe()
      os.set_blocking(self._pipe[1], False)
      self._previous_fd = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
    self._thread = threading.Thread(target=self._watch, name="tf_data_service_watchdog", daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._done.set()
    self._thread.join()
    if self._pipe is not None:
      signal.set_wakeup_fd(self._previous_fd if self._previous_fd is not None else -1)
      for fd in self._pipe:
        os.close(fd)
      self._pipe = None

  def _signal(self, wait_secs):
    """The stop signal (SIGTERM/SIGINT) written to the wakeup pipe within `wait_secs`, else None."""
    if self._pipe is None:
      self._done.wait(wait_secs)
      return None
    readable, _, _ = select.select([self._pipe[0]], [], [], wait_secs)
    if not readable:
      return None
    received = os.read(self._pipe[0], 64)
    stops = [b for b in received if b in (signal.SIGTERM, signal.SIGINT)]
    return signal.Signals(stops[0]) if stops else None

  def _watch(self):
    silent_since, signalled, progress_then = None, None, None
    while not self._done.is_set():
      received = self._signal(self.interval)
      if self._done.is_set():
        return
      now = self.clock()
      if received is not None and signalled is None:
        signalled, progress_then = (received, now), self.last_progress
      answers = reachable(self.address, min(2.0, self.interval))
      silent_since = None if answers else (silent_since or now)
      if signalled is not None and self.last_progress == progress_then and (
          not answers or now - signalled[1] >= self.timeout):
        why = "does not answer" if not answers else f"delivered no batch for {now - signalled[1]:.0f} s"
        self.stop(f"{signalled[0].name} while waiting for the tf.data service at {self.address}, which {why}", 42)
        return
      if silent_since is not None and now - silent_since >= self.timeout:
        self.stop(f"The tf.data service at {self.address} stopped answering ({now - silent_since:.0f} s, "
                  "--tf_data_service_timeout_secs)", 1)
        return


def exit_now(program, message, exit_code, label="error"):
  """Ends the process from a thread other than the main one (which is blocked inside TensorFlow): one line,
  `program: label: message`, then os._exit. The caller has saved what it could."""
  sys.stdout.flush()
  print(f"{program}: {label}: {message}", file=sys.stderr, flush=True)
  os._exit(exit_code)  # pylint: disable=protected-access


# ----------------------------------------------------------------------------------------------------------------------
# The program


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All options are --flags.")
  if not FLAGS.expose_to_network:
    raise errors.BadValue(f"Refusing to start: {EXPOSURE}. Run it only inside a private network, and pass "
                          "--expose_to_network to say so.")
  if FLAGS.dispatcher and FLAGS.port:
    raise errors.BadValue("Pass --port (start a dispatcher here) or --dispatcher (join one), not both.")
  if not FLAGS.dispatcher and not FLAGS.port:
    raise errors.BadValue("Pass --port=PORT to start a dispatcher here, or --dispatcher=HOST:PORT to add workers "
                          "to a running one.")
  address, _, workers = start(FLAGS.port or 0, FLAGS.workers, FLAGS.dispatcher)
  logging.warning("--expose_to_network: %s. Keep these ports inside a private network.", EXPOSURE)
  logging.info("tf.data service: dispatcher %s, %d worker(s) on this machine; Ctrl-C (or SIGTERM) stops them. "
               "Train with --tf_data_service=%s", address, len(workers), address)
  stop = threading.Event()
  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: stop.set())
  while not stop.wait(1.0):
    pass
  logging.info("tf.data service stopped.")


def define_flags():
  """The service program's flags (`python -m slimflowers.data_service`)."""
  flags.DEFINE_integer("port", 0, "Start a dispatcher on this port.")
  flags.DEFINE_string("dispatcher", None, "HOST:PORT of a running dispatcher to add workers to.")
  flags.DEFINE_integer("workers", 1, "Worker servers to start in this process.")
  flags.DEFINE_bool("expose_to_network", False, "Required: say that you know the servers listen on all network "
                    "interfaces without authentication (anyone who reaches them runs code as this user), and that "
                    "this machine's ports are reachable only from a private network.")
