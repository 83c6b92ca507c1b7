"""Shared test helpers: tiny learnable datasets made by the real converter, and checkpoint/event readers.

Each class is a distinct colour with noise, so a few steps of cifarnet already learn something.
"""
import glob
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = [(220, 40, 40), (40, 200, 40), (40, 60, 220), (230, 220, 40), (200, 40, 200), (40, 210, 210)]


def write_folder(root, *, num_classes, per_class, size=40, seed=0):
  """Writes root/class_k/img_i.jpg; returns root."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(seed)
  for c in range(num_classes):
    d = os.path.join(root, f"class_{c}")
    os.makedirs(d, exist_ok=True)
    for i in range(per_class):
      img = np.array(COLOURS[c % len(COLOURS)], np.float32) + rng.normal(0, 40, (size, size, 3))
      img = np.clip(img, 0, 255).astype(np.uint8)
      with open(os.path.join(d, f"img_{i:03d}.jpg"), "wb") as f:
        f.write(tf.io.encode_jpeg(img, quality=90).numpy())
  return root


def make_dataset(tmp_dir, *, num_classes=3, per_class=12, validation_size=0.25, test_size=0, size=40):
  """A converted `folder` dataset in tmp_dir/converted; returns its path (str)."""
  tmp_dir = str(tmp_dir)
  source = write_folder(os.path.join(tmp_dir, "photos"), num_classes=num_classes, per_class=per_class, size=size)
  out = os.path.join(tmp_dir, "converted")
  cmd = [sys.executable, os.path.join(ROOT, "download_and_convert_data.py"), "--dataset_name=folder",
         f"--source={source}", f"--dataset_dir={out}", f"--validation_size={validation_size}",
         f"--test_size={test_size}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
  if proc.returncode != 0:
    raise RuntimeError(f"conversion failed:\n{proc.stderr[-3000:]}")
  return out


def checkpoint_weights(ckpt_path, model_name="cifarnet", num_classes=3, ema=False):
  """{variable path: array} of the model (or ema_model) held in a training checkpoint."""
  import nets  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  model = nets.get_model(model_name, num_classes)
  key = "ema_model" if ema else "model"
  tf.train.Checkpoint(**{key: model}).read(str(ckpt_path)).expect_partial().assert_existing_objects_matched()
  return {v.path: np.array(v.numpy()) for v in model.weights}


def summary_steps(logdir):
  """{tag: [steps]} of every summary in logdir's event files."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tags = {}
  for path in glob.glob(os.path.join(str(logdir), "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        tags.setdefault(v.tag, []).append(event.step)
  return tags
