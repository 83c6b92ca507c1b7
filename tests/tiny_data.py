"""Shared test helpers: tiny learnable datasets made by the real converter, and checkpoint/event readers.

Each class is a distinct colour with noise, so a few steps of cifarnet already learn something.
"""
import glob
import os
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
  """A converted `folder` dataset in tmp_dir/converted (in-process, one worker); returns its path (str)."""
  import datasets  # pylint: disable=g-import-not-at-top
  tmp_dir = str(tmp_dir)
  source = write_folder(os.path.join(tmp_dir, "photos"), num_classes=num_classes, per_class=per_class, size=size)
  out = os.path.join(tmp_dir, "converted")
  datasets.convert("folder", out, source=source, validation_size=validation_size, test_size=test_size or None,
                   num_workers=1)
  return out


def train(train_dir, dataset_dir, **overrides):
  """Runs the trainer in this process (slimflowers.train.run) with tiny-test defaults; returns run_info.

  Keyword arguments are training flags (slimflowers/train/flags.py). Keras' global dtype policy
  is restored afterwards, so one test's --precision cannot leak into the next.
  """
  import keras  # pylint: disable=g-import-not-at-top
  from slimflowers.train import program as train_lib  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  flags = dict(TRAIN_DEFAULTS, train_dir=str(train_dir), dataset_dir=str(dataset_dir))
  flags.update(overrides)
  policy = keras.mixed_precision.global_policy()
  try:
    return train_lib.run(train_flags.config(**flags))
  finally:
    keras.mixed_precision.set_global_policy(policy)


# What every tiny test run shares (the real script's tests use the same values as flags).
TRAIN_DEFAULTS = {"model_name": "cifarnet", "train_image_size": 32, "batch_size": 8, "log_every_n_steps": 2,
                  "optimizer": "momentum", "learning_rate": 0.05, "save_interval_secs": 0, "dataset_name": "folder"}


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


ARROWS = ("left", "right", "up", "down")


def arrow_image(direction, rng, size=32):
  """A rendered arrow pointing `direction` at a random position, scale, stroke and colour, on noise.

  Horizontal mirroring turns "left" into "right" and leaves "up" and "down" as they are: the
  set is learnable only if training does not flip images.
  """
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  length = rng.uniform(0.45, 0.7) * size
  width = rng.uniform(1.2, 2.5)
  cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
  u, v = (xx - cx), (yy - cy)  # "right": along +x
  if direction == "left":
    u = -u
  elif direction == "up":
    u, v = -v, u
  elif direction == "down":
    u, v = v, u
  half = length / 2
  head = length * 0.35
  shaft = (np.abs(v) <= width) & (u >= -half) & (u <= half - head * 0.5)
  tip = half - u  # distance back from the tip
  arrowhead = (u <= half) & (u >= half - head) & (np.abs(v) <= tip * 0.8)
  mask = (shaft | arrowhead).astype(np.float32)[..., None]
  background = rng.uniform(0, 255, 3) * 0.4 + rng.normal(0, 18, (size, size, 3))
  stroke = rng.uniform(120, 255, 3)
  return np.clip(background * (1 - mask) + stroke * mask, 0, 255).astype(np.uint8)


def write_arrows(root, *, per_class, size=32, seed=0):
  """root/<direction>/arrow_i.png for the four ARROWS classes; returns root."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  for direction in ARROWS:
    d = os.path.join(root, direction)
    os.makedirs(d, exist_ok=True)
    for i in range(per_class):
      with open(os.path.join(d, f"arrow_{i:04d}.png"), "wb") as f:
        f.write(tf.io.encode_png(arrow_image(direction, rng, size)).numpy())
  return root
