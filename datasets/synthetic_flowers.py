"""synthetic_flowers: a procedurally generated stand-in for TF flower_photos (no download needed).

    python download_and_convert_data.py --dataset_name=synthetic_flowers --dataset_dir=/tmp/synthetic_flowers

Writes `flower_photos/<class>/synth_NNNNN.jpg` (in `--source` if given, else in the
dataset directory), then converts it through the very same path as `flowers`.

The 5 classes share TF flower_photos' names and are distinct but overlapping families:
- daisy: 12-22 thin white/pale petals, small yellow-orange disc;
- dandelion: 30-60 very fine yellow rays in layers, no visible disc;
- roses: a round bloom of broad overlapping petals with a spiral of shading, no disc;
- sunflowers: 15-28 yellow/orange petals around a large dark seeded disc;
- tulips: an upright cup with 3 pointed tips, on a stem.
Colour ranges overlap on purpose (yellow daisies, dandelions and sunflowers; white roses,
daisies and tulips; red/pink roses and tulips), so shape matters. Each image has 1-3
flowers at random position, scale, rotation and lighting on a cluttered background
(gradient, texture, leaves, colour blobs), sometimes partly occluded by a leaf; size
160-400 px, JPEG quality 60-95. Image i is a pure function of (--seed, i), so the same
seed gives identical bytes whatever the number of workers.

Only numpy and TensorFlow image ops (resize, encode_jpeg): no new dependency.
"""
import json
import math
import os
import re

from absl import logging
import numpy as np

from datasets import conversion
from datasets import dataset_utils
from datasets import flowers
from slimflowers.core import errors
from slimflowers.core import fileio

NAME = "synthetic_flowers"
FILES = ()
CLASS_NAMES = flowers.CLASS_NAMES
OPTIONS = {"num_images": 2500, "validation_size": 0.2, "test_size": 0, "seed": 0}
GENERATOR_VERSION = 1
_MARKER = "SYNTHETIC.json"
_IMAGE_NAME = "synth_{:05d}.jpg"       # what the generator writes in each class folder; _IMAGE_NAME_RE matches it
_IMAGE_NAME_RE = re.compile(r"synth_\d{5,}\.jpg")
_IMAGES_PER_TASK = 50


# ----------------------------------------------------------------------------------------------------------------------
# Drawing primitives: float32 HxWx3 images in [0, 1], soft (anti-aliased) alpha masks.


def _smooth_noise(rng, h, w, cells, channels=1):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  grid = rng.random((cells, cells, channels), dtype=np.float32)
  return tf.image.resize(grid, (h, w), method="bicubic").numpy()


def _roi(h, w, cx, cy, radius):
  """Integer bounds of the square around (cx, cy) clipped to the image, and its pixel coordinates."""
  y0, y1 = max(0, int(cy - radius)), min(h, int(cy + radius) + 1)
  x0, x1 = max(0, int(cx - radius)), min(w, int(cx + radius) + 1)
  if y0 >= y1 or x0 >= x1:
    return None
  yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
  return (y0, y1, x0, x1), xx - cx, yy - cy


def _blend(img, box, alpha, color):
  y0, y1, x0, x1 = box
  a = np.clip(alpha, 0.0, 1.0)[..., None]
  region = img[y0:y1, x0:x1]
  region *= 1.0 - a
  region += a * color


def _edge(distance_inside, softness=1.0):
  """Soft mask from a signed distance (positive inside), ~1 px anti-aliasing."""
  return np.clip(distance_inside / softness + 0.5, 0.0, 1.0)


def _hsv(h, s, v):
  """One HSV colour (h in turns) -> RGB float32."""
  h = h % 1.0
  i = int(h * 6.0)
  f = h * 6.0 - i
  p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6], np.float32)


def _leaf(img, rng, cx, cy, length, width, angle, color):
  h, w = img.shape[:2]
  roi = _roi(h, w, cx, cy, length)
  if roi is None:
    return
  box, dx, dy = roi
  u = dx * math.cos(angle) + dy * math.sin(angle)
  v = -dx * math.sin(angle) + dy * math.cos(angle)
  t = np.clip(u / length, -1.0, 1.0)
  half_width = width * np.sqrt(np.clip(1.0 - t * t, 0.0, 1.0)) ** 1.3
  alpha = _edge(half_width - np.abs(v)) * (np.abs(u) < length)
  shade = 0.8 + 0.35 * (v / max(width, 1.0))  # light from one side
  rib = 1.0 - 0.35 * _edge(0.8 - np.abs(v))  # darker midrib
  color = color[None, None, :] * np.clip(shade * rib, 0.4, 1.3)[..., None]
  _blend(img, box, alpha, color)
  del rng


def _background(rng, h, w):
  # Gradient between two colours: foliage, soil, sky or grey, with hue and brightness jitter.
  families = [(0.22, 0.35), (0.08, 0.14), (0.55, 0.65), (0.0, 1.0)]
  c = []
  for _ in range(2):
    lo, hi = families[rng.integers(len(families))]
    c.append(_hsv(rng.uniform(lo, hi), rng.uniform(0.1, 0.7), rng.uniform(0.2, 0.8)))
  angle = rng.uniform(0, 2 * math.pi)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  t = (xx * math.cos(angle) + yy * math.sin(angle))
  t = (t - t.min()) / max(t.max() - t.min(), 1.0)
  img = c[0] * (1 - t[..., None]) + c[1] * t[..., None]
  # Texture: low-frequency colour noise and fine grain.
  img *= 0.75 + 0.5 * _smooth_noise(rng, h, w, int(rng.integers(4, 12)), 3)
  img += (rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(0.01, 0.06))
  # Leaves and colour blobs (clutter in petal colours too, so colour alone never decides).
  s = min(h, w)
  for _ in range(int(rng.integers(2, 9))):
    green = _hsv(rng.uniform(0.2, 0.4), rng.uniform(0.4, 0.9), rng.uniform(0.25, 0.7))
    _leaf(img, rng, rng.uniform(0, w), rng.uniform(0, h), s * rng.uniform(0.1, 0.35), s * rng.uniform(0.03, 0.09),
          rng.uniform(0, math.pi), green)
  for _ in range(int(rng.integers(0, 5))):
    roi = _roi(h, w, rng.uniform(0, w), rng.uniform(0, h), s * rng.uniform(0.02, 0.08))
    if roi is None:
      continue
    box, dx, dy = roi
    radius = (box[1] - box[0]) / 2.2
    color = _hsv(rng.uniform(0, 1), rng.uniform(0.2, 1.0), rng.uniform(0.4, 1.0))
    _blend(img, box, _edge(radius - np.hypot(dx, dy)) * rng.uniform(0.5, 1.0), color)
  return img


# ----------------------------------------------------------------------------------------------------------------------
# The five flower families. Each draws one flower of radius `r` centred at (cx, cy).


def _petal_palette(rng, kind):
  if kind == "white":  # white or pale tint
    return _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.25), rng.uniform(0.85, 1.0))
  if kind == "yellow":
    return _hsv(rng.uniform(0.11, 0.17), rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0))
  if kind == "orange":
    return _hsv(rng.uniform(0.06, 0.12), rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0))
  if kind == "red":
    return _hsv(rng.uniform(-0.03, 0.02), rng.uniform(0.7, 1.0), rng.uniform(0.55, 0.95))
  if kind == "pink":
    return _hsv(rng.uniform(0.88, 0.97), rng.uniform(0.3, 0.7), rng.uniform(0.8, 1.0))
  if kind == "purple":
    return _hsv(rng.uniform(0.75, 0.85), rng.uniform(0.4, 0.8), rng.uniform(0.5, 0.9))
  raise ValueError(kind)


def _radial_flower(img, rng, cx, cy, r, *, petals, base, sharpness, color, disc_radius, disc_color, layers=1,
                   streaks=0, disc_texture=0.0, spiral=0.0):
  h, w = img.shape[:2]
  roi = _roi(h, w, cx, cy, r * 1.05)
  if roi is None:
    return
  box, dx, dy = roi
  rho = np.hypot(dx, dy)
  theta = np.arctan2(dy, dx)
  for layer in range(layers):
    scale = 1.0 - 0.22 * layer
    phase = rng.uniform(0, 2 * math.pi)
    lobes = np.abs(np.cos(0.5 * petals * (theta + phase)))
    outline = r * scale * (base + (1.0 - base) * lobes ** sharpness)
    alpha = _edge(outline - rho)
    shade = 0.7 + 0.3 * lobes ** 0.5  # darker between petals
    shade = shade * (0.75 + 0.25 * np.clip(rho / max(r * scale, 1.0), 0, 1)) * (1.0 - 0.1 * layer)
    if streaks:
      shade = shade * (0.85 + 0.15 * np.cos(streaks * theta + 3 * phase))
    if spiral:
      swirl = np.sin(spiral * np.log(rho + 1.0) + 3.0 * theta + phase)
      shade = shade * (0.78 + 0.22 * swirl)
    _blend(img, box, alpha, color[None, None, :] * shade[..., None])
  if disc_radius > 0:
    disc = _edge(disc_radius - rho)
    shade = 1.0 - 0.3 * np.clip(rho / disc_radius, 0, 1)
    if disc_texture:
      seeds = np.cos(0.9 * dx * math.cos(0.6) + 0.9 * dy) * np.cos(0.9 * dy * math.cos(0.6) - 0.9 * dx)
      shade = shade * (1.0 - disc_texture * (0.5 + 0.5 * seeds))
    _blend(img, box, disc, disc_color[None, None, :] * shade[..., None])


def _daisy(img, rng, cx, cy, r):
  color = _petal_palette(rng, "white" if rng.random() < 0.75 else rng.choice(["pink", "yellow", "purple"]))
  _radial_flower(img, rng, cx, cy, r, petals=int(rng.integers(12, 23)), base=rng.uniform(0.15, 0.3),
                 sharpness=rng.uniform(2.5, 5.0), color=color, disc_radius=r * rng.uniform(0.18, 0.3),
                 disc_color=_petal_palette(rng, rng.choice(["yellow", "orange"])), disc_texture=0.15)


def _dandelion(img, rng, cx, cy, r):
  color = _petal_palette(rng, "yellow" if rng.random() < 0.8 else "orange")
  _radial_flower(img, rng, cx, cy, r, petals=int(rng.integers(30, 61)), base=rng.uniform(0.55, 0.8),
                 sharpness=rng.uniform(0.8, 2.0), color=color, disc_radius=0, disc_color=color,
                 layers=int(rng.integers(3, 5)), streaks=int(rng.integers(60, 120)))


def _rose(img, rng, cx, cy, r):
  color = _petal_palette(rng, rng.choice(["red", "red", "pink", "pink", "white", "yellow"]))
  _radial_flower(img, rng, cx, cy, r, petals=int(rng.integers(5, 9)), base=rng.uniform(0.7, 0.85),
                 sharpness=rng.uniform(0.8, 1.5), color=color, disc_radius=0, disc_color=color,
                 layers=int(rng.integers(2, 4)), spiral=rng.uniform(3.0, 6.0))


def _sunflower(img, rng, cx, cy, r):
  color = _petal_palette(rng, "yellow" if rng.random() < 0.7 else "orange")
  disc = _hsv(rng.uniform(0.04, 0.1), rng.uniform(0.5, 0.9), rng.uniform(0.12, 0.35))
  _radial_flower(img, rng, cx, cy, r, petals=int(rng.integers(15, 29)), base=rng.uniform(0.35, 0.5),
                 sharpness=rng.uniform(1.2, 3.0), color=color, disc_radius=r * rng.uniform(0.38, 0.55),
                 disc_color=disc, disc_texture=0.4)


def _tulip(img, rng, cx, cy, r):
  h, w = img.shape[:2]
  color = _petal_palette(rng, rng.choice(["red", "pink", "yellow", "orange", "purple", "white"]))
  angle = rng.uniform(-0.45, 0.45)  # upright, tilted a little
  ca, sa = math.cos(angle), math.sin(angle)
  # Stem first (below the cup), then the cup.
  stem_len = r * rng.uniform(1.2, 2.5)
  stem_cx, stem_cy = cx - sa * (0.5 * r + stem_len / 2), cy + ca * (0.5 * r + stem_len / 2)
  green = _hsv(rng.uniform(0.22, 0.38), rng.uniform(0.5, 0.9), rng.uniform(0.3, 0.7))
  _leaf(img, rng, stem_cx, stem_cy, stem_len / 2, max(1.5, r * 0.07), angle + math.pi / 2, green)
  roi = _roi(h, w, cx, cy, r * 1.1)
  if roi is None:
    return
  box, dx, dy = roi
  x = dx * ca + dy * sa  # across the cup
  y = -(-dx * sa + dy * ca)  # up the cup
  half_w, half_h = r * rng.uniform(0.55, 0.75), r * rng.uniform(0.8, 1.0)
  t = np.clip(x / half_w, -1.0, 1.0)
  body = half_w * np.sqrt(np.clip(1.0 - ((y + 0.15 * half_h) / half_h) ** 2, 0, 1)) - np.abs(x)
  tips = half_h * (0.45 + 0.4 * np.abs(np.cos(1.5 * math.pi * t))) - y  # three pointed tips on top
  alpha = _edge(np.minimum(body, tips))
  shade = 0.75 + 0.3 * (1.0 - np.abs(t)) - 0.25 * np.exp(-((np.abs(t) - 0.33) / 0.06) ** 2)  # petal edges
  shade = shade * (0.85 + 0.2 * np.clip(y / half_h, -1, 1))
  _blend(img, box, alpha, color[None, None, :] * shade[..., None])


_DRAW = {"daisy": _daisy, "dandelion": _dandelion, "roses": _rose, "sunflowers": _sunflower, "tulips": _tulip}


def generate_image(seed, index):
  """Image `index` of the dataset with `seed`: (class name, RGB uint8 array, JPEG quality)."""
  rng = np.random.default_rng([seed, index])
  class_name = CLASS_NAMES[index % len(CLASS_NAMES)]
  h, w = (int(v) for v in rng.integers(160, 401, size=2))
  img = _background(rng, h, w)
  s = min(h, w)
  n_flowers = int(rng.choice([1, 1, 1, 2, 3]))
  for k in range(n_flowers):
    if k == 0:  # the main flower: large and near the centre, so crops of a third of the image still show it
      r = s * rng.uniform(0.25, 0.42)
      cx, cy = rng.uniform(0.35 * w, 0.65 * w), rng.uniform(0.35 * h, 0.65 * h)
    else:
      r = s * rng.uniform(0.08, 0.2)
      cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
    _DRAW[class_name](img, rng, cx, cy, r)
  if rng.random() < 0.3:  # a leaf partly in front of the flower
    green = _hsv(rng.uniform(0.2, 0.4), rng.uniform(0.4, 0.9), rng.uniform(0.25, 0.7))
    _leaf(img, rng, rng.uniform(0.2 * w, 0.8 * w), rng.uniform(0.2 * h, 0.8 * h), s * rng.uniform(0.15, 0.3),
          s * rng.uniform(0.04, 0.08), rng.uniform(0, math.pi), green)
  # Lighting: a smooth brightness field and a colour cast.
  light = 0.65 + 0.7 * _smooth_noise(rng, h, w, 3)
  cast = 1.0 + rng.uniform(-0.08, 0.08, size=3).astype(np.float32)
  img = img * light * cast
  img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
  return class_name, img, int(rng.integers(60, 96))


def _generate_chunk(task):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for index in task["indices"]:
    class_name, img, quality = generate_image(task["seed"], index)
    data = tf.io.encode_jpeg(img, quality=quality).numpy()
    with open(os.path.join(task["root"], class_name, _IMAGE_NAME.format(index)), "wb") as f:
      f.write(data)
  return len(task["indices"])


def _read_marker(root):
  """The generator marker in `root` (a dict), or None when absent or unreadable."""
  try:
    with open(os.path.join(root, _MARKER), encoding="utf-8") as f:
      marker = json.load(f)
  except (OSError, ValueError):
    return None
  return marker if isinstance(marker, dict) and "generator_version" in marker else None


def _foreign_files(root):
  """Paths under `root` (relative) that the generator does not write: anything but the marker, the class
  folders and synth_NNNNN.jpg in them."""
  foreign = []
  for dirpath, dirnames, filenames in os.walk(root):
    rel = os.path.relpath(dirpath, root)
    if rel == ".":
      foreign += [d + "/" for d in dirnames if d not in CLASS_NAMES]
      foreign += [f for f in filenames if f != _MARKER]
      dirnames[:] = [d for d in dirnames if d in CLASS_NAMES]
    else:
      foreign += [os.path.join(rel, d) + "/" for d in dirnames]
      foreign += [os.path.join(rel, f) for f in filenames if not _IMAGE_NAME_RE.fullmatch(f)]
      dirnames[:] = []
  return sorted(foreign)


def generate(root, num_images, seed, pool=None):
  """Writes the flower_photos layout into `root` (atomically: a killed run leaves no partial `root`).

  Re-uses `root` when its marker says it was generated with the same seed, count and version.
  """
  marker = {"generator_version": GENERATOR_VERSION, "num_images": num_images, "seed": seed}
  found = _read_marker(root)
  if found == marker:
    logging.info("Re-using the synthetic images in %s (same seed and count).", root)
    return
  if os.path.lexists(root) and found is None:
    # Not ours: a user's photo folder, or real flower_photos. Never delete or replace it.
    raise dataset_utils.ConversionError(
        f"{root} already exists and was not generated by synthetic_flowers (it has no {_MARKER}); it is left "
        "untouched. Pass --source=NEW_DIR (a directory that does not exist yet) for the generated images, "
        "or another --dataset_dir; to convert your own photos use --dataset_name=folder --source=" + root + ".")
  if num_images < len(CLASS_NAMES):
    raise errors.BadValue(f"--num_images={num_images}: need at least {len(CLASS_NAMES)} (one per class).")
  if found is not None:
    foreign = _foreign_files(root)
    if foreign:  # e.g. a user's photos added to the generated folder: replacing the tree would delete them
      raise dataset_utils.ConversionError(
          f"{root} was generated by synthetic_flowers with other settings ({found}), but it also holds files the "
          f"generator did not write ({len(foreign)}, e.g. {foreign[0]}); it is left untouched. Move those files "
          f"out, or pass --source=NEW_DIR for the new images.")
  # Replaces only a tree this generator wrote (its marker says so, and it holds nothing else) with other settings.
  with fileio.atomic_dir(root, replace=found is not None) as tmp:
    for class_name in CLASS_NAMES:
      os.makedirs(os.path.join(tmp, class_name))
    tasks = [{"indices": list(range(i, min(i + _IMAGES_PER_TASK, num_images))), "seed": seed, "root": tmp}
             for i in range(0, num_images, _IMAGES_PER_TASK)]
    progress = conversion.Progress("Generating synthetic_flowers", num_images)
    own_pool = pool is None
    if own_pool:
      pool = conversion.WorkerPool(1).__enter__()
    for n in pool.imap_unordered(_generate_chunk, tasks):
      progress.add(n)
    fileio.write_json_atomic(os.path.join(tmp, _MARKER), marker)


def prepare(dataset_dir, source, options, pool):
  root = source or os.path.join(dataset_dir, flowers.ROOT)
  generate(root, int(options["num_images"]), int(options["seed"]), pool)
  class_names, splits = dataset_utils.split_folder(root, options, CLASS_NAMES)
  return class_names, splits, {"synthetic_flowers/": {"generator_version": GENERATOR_VERSION,
                                                      "tree_sha256": "computed"}}
