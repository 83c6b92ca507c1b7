"""Training-step throughput: our Orbit step against keras.Model.fit, same net, batch and data, same run.

    .venv/bin/python bench/train_bench.py                       # small + large net, ~3 min on 2 cores
    .venv/bin/python bench/train_bench.py --models=cifarnet:64:64 --steps=30

Prints, per net, images/s of our ClassifierTrainer (the very class train_image_classifier.py runs)
and of `model.fit` on the same in-memory batch, and the ratio (target >= 1.0). With
--end_to_end_dataset_dir it also runs the real script on a converted dataset and prints its
images/s from run_info.json (input pipeline included) against the in-memory figure.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from slimflowers.core import run_dir

flags.DEFINE_list("models", ["cifarnet:64:64", "mobilenet_v1:16:224"],
                  "name:batch:image_size entries (one small and one large net by default).")
flags.DEFINE_integer("steps", 20, "Timed steps per measurement (after warm-up).")
flags.DEFINE_integer("repeats", 3, "Alternated measurements per side; the best of each is compared.")
flags.DEFINE_string("end_to_end_dataset_dir", None, "A converted synthetic_flowers dir for the end-to-end figure.")
flags.DEFINE_string("end_to_end_model", "cifarnet:64:64", "name:batch:image_size for the end-to-end run.")
FLAGS = flags.FLAGS


def _ours(model_name, batch, size, steps, num_classes=5):
  """images/s of the ClassifierTrainer train_image_classifier.py runs, with the flags' defaults (rmsprop)."""
  import keras  # pylint: disable=g-import-not-at-top
  import orbit
  import tensorflow as tf
  import nets
  from slimflowers.train import flags as train_flags
  from slimflowers.train import optim
  from slimflowers.train import trainer as trainer_lib
  cfg = train_flags.config()  # the trainer's own defaults: optimizer, weight decay, ...
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"], cross_device_ops=tf.distribute.ReductionToOneDevice())
  images = tf.random.stateless_uniform([batch, size, size, 3], seed=[1, 2], minval=-1, maxval=1)
  labels = tf.random.stateless_uniform([batch], seed=[3, 4], maxval=num_classes, dtype=tf.int32)
  ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
  with strategy.scope():
    model = nets.get_model(model_name, num_classes)
    step = orbit.utils.create_global_step()
  trainer = trainer_lib.ClassifierTrainer(
      strategy=strategy, model=model, num_classes=num_classes, schedule=optim.LearningRateSchedule("fixed", 0.001),
      optimizer_name=cfg.optimizer, optimizer_options=optim.optimizer_options(cfg), global_batch_size=batch,
      global_step=step, weight_decay=cfg.weight_decay)
  trainer.train_dataset = strategy.experimental_distribute_dataset(ds)
  trainer.train(tf.constant(3))  # compile
  t = time.perf_counter()
  trainer.train(tf.constant(steps))
  secs = time.perf_counter() - t
  keras.backend.clear_session()
  return steps * batch / secs


def _fit(model_name, batch, size, steps, num_classes=5):
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  import nets
  images = tf.random.stateless_uniform([batch, size, size, 3], seed=[1, 2], minval=-1, maxval=1)
  labels = tf.random.stateless_uniform([batch], seed=[3, 4], maxval=num_classes, dtype=tf.int32)
  ds = tf.data.Dataset.from_tensors((images, labels)).repeat()
  model = nets.get_model(model_name, num_classes)
  model.compile(optimizer=keras.optimizers.RMSprop(0.001, rho=0.9, momentum=0.9, epsilon=1.0),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=steps)
  model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)  # compile
  t = time.perf_counter()
  model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
  secs = time.perf_counter() - t
  keras.backend.clear_session()
  return steps * batch / secs


def _end_to_end(dataset_dir, model_name, batch, size, steps, *extra):
  import json  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with tempfile.TemporaryDirectory() as d:
    subprocess.run([sys.executable, os.path.join(root, "train_image_classifier.py"), f"--train_dir={d}",
                    "--dataset_name=synthetic_flowers", f"--dataset_dir={dataset_dir}", f"--model_name={model_name}",
                    f"--train_image_size={size}", f"--batch_size={batch}", f"--max_number_of_steps={steps}",
                    "--log_every_n_steps=10", "--save_interval_secs=0", *extra], check=True, capture_output=True)
    with open(os.path.join(d, run_dir.RUN_INFO)) as f:
      return json.load(f)["images_per_sec"]


def main(unused_argv):
  print(f"{'net':<16}{'batch':>6}{'size':>6}{'ours img/s':>12}{'fit img/s':>12}{'ratio':>8}   (best of "
        f"{FLAGS.repeats} alternated runs each)")
  for entry in FLAGS.models:
    name, batch, size = entry.split(":")
    batch, size = int(batch), int(size)
    rates = {"ours": [], "fit": []}
    for _ in range(FLAGS.repeats):  # alternate, so a noisy neighbour hurts both alike
      rates["ours"].append(_ours(name, batch, size, FLAGS.steps))
      rates["fit"].append(_fit(name, batch, size, FLAGS.steps))
    ours, fit = max(rates["ours"]), max(rates["fit"])
    print(f"{name:<16}{batch:>6}{size:>6}{ours:>12.1f}{fit:>12.1f}{ours / fit:>8.2f}   all runs: ours "
          f"{', '.join(f'{r:.1f}' for r in rates['ours'])}; fit {', '.join(f'{r:.1f}' for r in rates['fit'])}",
          flush=True)
  if FLAGS.end_to_end_dataset_dir:
    name, batch, size = FLAGS.end_to_end_model.split(":")
    batch, size = int(batch), int(size)
    mem = _ours(name, batch, size, FLAGS.steps)
    for label, extra in (("JPEG reader", ["--decoded_cache_mb=0"]), ("decoded-image cache", [])):
      e2e = _end_to_end(FLAGS.end_to_end_dataset_dir, name, batch, size, max(60, FLAGS.steps * 3), *extra)
      print(f"end-to-end {name} from TFRecords, {label}: {e2e:.1f} img/s vs in-memory step {mem:.1f} img/s "
            f"(ratio {e2e / mem:.2f}; 1.0 = input never the bottleneck)", flush=True)


if __name__ == "__main__":
  app.run(main)
