"""What each preprocessing recipe learns on a small orientation-sensitive set, and our loop against `fit`.

    .venv/bin/python bench/preprocessing_bench.py            # ~5 min on 2 cores
    # recipe      flip   val acc @ 500 steps   train s
    # lenet       off    1.000                 ...
    # ...
    # cifarnet, lenet (no augmentation), adam 1e-3, 500 steps: ours 1.000 in 21.9 s, keras fit 1.000 in 13.3 s

The set: rendered arrows (tests/tiny_data.write_arrows), 4 classes, 32 px, of which left and
right are each other's mirror image. Each row trains cifarnet for --steps steps with one
preprocessing recipe, with and without the random flip, and reports exact validation accuracy.
Then the same net, optimizer, batch, steps and no augmentation through our trainer (from TFRecords)
and through `keras.Model.fit` (the same preprocessed images in memory), both in this process:
accuracy within 3 points of each other is the parity target; the wall-time ratio is printed.
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

flags.DEFINE_integer("steps", 500, "Training steps per run.")
flags.DEFINE_integer("per_class", 150, "Arrows per class (a quarter go to validation).")
flags.DEFINE_string("work_dir", None, "Where the data and runs go (default: a temporary directory).")
flags.DEFINE_list("recipes", ["lenet", "cifarnet", "inception", "vgg"], "Preprocessing recipes to compare.")
FLAGS = flags.FLAGS

SIZE, BATCH, LEARNING_RATE = 32, 32, 0.001


def _data(work_dir):
  import datasets  # pylint: disable=g-import-not-at-top
  from tests import tiny_data  # pylint: disable=g-import-not-at-top
  out = os.path.join(work_dir, "arrows")
  if datasets.records.read_metadata(out) is None:
    source = tiny_data.write_arrows(os.path.join(work_dir, "arrows_photos"), per_class=FLAGS.per_class)
    datasets.convert("folder", out, source=source, validation_size=0.25, num_workers=1)
  return out


def _validation_accuracy(train_dir, data):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from slimflowers.eval import program as evaluate  # pylint: disable=g-import-not-at-top
  (result,) = evaluate.run(tf.distribute.get_strategy(), checkpoint_path=train_dir, dataset_name="folder",
                           dataset_dir=data, batch_size=50)
  return result["accuracy"]


def _ours(train_dir, data, **flags_):
  from slimflowers.train import flags as train_flags
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top
  cfg = train_flags.config(train_dir=train_dir, dataset_dir=data, dataset_name="folder", model_name="cifarnet",
                           train_image_size=SIZE, batch_size=BATCH, max_number_of_steps=FLAGS.steps,
                           optimizer="adam", learning_rate=LEARNING_RATE, learning_rate_decay_type="fixed",
                           log_every_n_steps=100, save_interval_secs=0, **flags_)
  start = time.perf_counter()
  train.run(cfg)
  return time.perf_counter() - start, _validation_accuracy(train_dir, data)


def _fit(data):
  """The same net, optimizer, batch and steps through keras.Model.fit on the lenet-preprocessed images."""
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np
  import tensorflow as tf
  import datasets
  import nets
  from slimflowers.data import preprocessing

  def arrays(split_name):
    split = datasets.get_split("folder", split_name, data)
    images, labels = [], []
    for r in tf.data.TFRecordDataset(split.filenames):
      f = datasets.records.parse_example(r)
      images.append(preprocessing.preprocess_eval(f["image/encoded"], SIZE, "lenet").numpy())
      labels.append(int(f["image/class/label"]))
    return np.stack(images), np.array(labels), split.num_classes

  x, y, num_classes = arrays("train")
  xv, yv, _ = arrays("validation")
  keras.utils.set_random_seed(0)
  model = nets.get_model("cifarnet", num_classes)
  model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  per_epoch = len(x) // BATCH
  epochs = -(-FLAGS.steps // per_epoch)
  ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(BATCH, drop_remainder=True).repeat()
  start = time.perf_counter()
  model.fit(ds, steps_per_epoch=per_epoch, epochs=epochs, verbose=0)
  secs = time.perf_counter() - start
  _, accuracy = model.evaluate(xv, yv, verbose=0)
  return secs, accuracy, epochs * per_epoch


def main(argv):
  del argv
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="slimflowers_preprocessing_bench_")
  data = _data(work_dir)
  print(f"arrows: 4 classes (left/right mirror each other), {FLAGS.per_class} per class, {SIZE} px; cifarnet, "
        f"adam {LEARNING_RATE}, batch {BATCH}, {FLAGS.steps} steps")
  print(f"{'recipe':<12}{'flip':<6}{'val acc':>8}{'train s':>10}")
  for recipe in FLAGS.recipes:
    for flip in (False, True):
      secs, accuracy = _ours(os.path.join(work_dir, f"{recipe}_{'flip' if flip else 'noflip'}_{time.time():.0f}"),
                             data, preprocessing_name=recipe, random_flip=flip)
      print(f"{recipe:<12}{'on' if flip else 'off':<6}{accuracy:>8.3f}{secs:>10.1f}", flush=True)
  secs, accuracy = _ours(os.path.join(work_dir, f"parity_{time.time():.0f}"), data, preprocessing_name="lenet",
                         dropout_rate=0.5)
  fit_secs, fit_accuracy, fit_steps = _fit(data)
  print(f"no augmentation (lenet): ours {accuracy:.3f} in {secs:.1f} s ({FLAGS.steps} steps from TFRecords, "
        f"evaluation not timed); keras fit {fit_accuracy:.3f} in {fit_secs:.1f} s ({fit_steps} steps, in memory); "
        f"accuracy difference {100 * (accuracy - fit_accuracy):+.1f} points (target within 3), wall time ratio "
        f"ours/fit {secs / fit_secs:.2f}")


if __name__ == "__main__":
  app.run(main)
