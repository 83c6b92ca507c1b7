"""The tf.data service: move the training input pipeline's decoding and augmentation to other processes or machines.

    python -m slimflowers.data_service --port=5050 --workers=2        # a dispatcher and two workers, here
    python -m slimflowers.data_service --dispatcher=host0:5050 --workers=4   # four more workers on another machine
    # 12:00:00 tf.data service: dispatcher grpc://localhost:5050, 2 worker(s) on this machine; Ctrl-C stops them
    python train_image_classifier.py ... --tf_data_service=grpc://host0:5050

When the input pipeline, not the accelerator, is the limit (many GPUs, few CPU cores per
host), the trainer sends its pipeline -- reading the shards, decoding, augmenting, batching --
to the service's workers and only receives finished batches (`distributed_epoch`: the
shards are split among the workers; a job name per run and restart step). Workers read
the dataset directory themselves: it must be a path every machine can read (a shared disk,
gs://).

What this changes (README, "Several machines"): batches are no longer a pure function of
the element index, because the service hands out elements in whatever order its workers
produce them, so a resumed run is not bit-identical to an uninterrupted one and two runs
with the same seed differ. What is kept: every record is seen once per epoch of the job, and
each image's augmentation is still drawn with TF-Slim's recipe from seeded stateless ops.
"""
import hashlib
import signal
import threading

from absl import app
from absl import flags
from absl import logging

from slimflowers import errors

FLAGS = flags.FLAGS


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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All options are --flags.")
  if FLAGS.dispatcher and FLAGS.port:
    raise errors.BadValue("Pass --port (start a dispatcher here) or --dispatcher (join one), not both.")
  if not FLAGS.dispatcher and not FLAGS.port:
    raise errors.BadValue("Pass --port=PORT to start a dispatcher here, or --dispatcher=HOST:PORT to add workers "
                          "to a running one.")
  address, _, workers = start(FLAGS.port or 0, FLAGS.workers, FLAGS.dispatcher)
  logging.info("tf.data service: dispatcher %s, %d worker(s) on this machine; Ctrl-C (or SIGTERM) stops them. "
               "Train with --tf_data_service=%s", address, len(workers), address)
  stop = threading.Event()
  for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: stop.set())
  while not stop.wait(1.0):
    pass
  logging.info("tf.data service stopped.")


if __name__ == "__main__":
  from slimflowers import cli  # pylint: disable=g-import-not-at-top  (before TensorFlow loads: see start())
  flags.DEFINE_integer("port", 0, "Start a dispatcher on this port.")
  flags.DEFINE_string("dispatcher", None, "HOST:PORT of a running dispatcher to add workers to.")
  flags.DEFINE_integer("workers", 1, "Worker servers to start in this process.")
  cli.run(main)
