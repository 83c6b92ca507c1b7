r"""A generated localisation set and the pointing game (Zhang et al. 2016, SOURCES.md §9): is Grad-CAM looking
at the object?

    boxes = pointing_game.write_localisation_set("data/where_photos", per_class=300, size=48)
    # data/where_photos/<pattern>/img_0000.png ... and boxes.json {relative path: [top, left, bottom, right]}

Each image is a cluttered background (a random colour gradient, pixel noise, and line segments, dots and
small rings in random colours, drawn the same way whatever the class) with one class-defining object: a
square patch (22-31 % of the image's side) at a random place, painted in two random colours with the class's
pattern of period 4 px (checker, diagonal, horizontal or vertical stripes); its box is recorded. Only the
patch's pattern tells the classes apart, so a net that classifies correctly must have found it.

The pointing game: for each correctly classified image, a hit when the heatmap's maximum lies inside the
object's box grown by `tolerance` pixels on each side. Score = hits / (hits + misses). A heatmap that points
at random scores about the grown box's share of the image (`random_baseline`).
"""
import json
import os

import numpy as np

CLASSES = ("checker", "diagonal", "horizontal", "vertical")
BOXES_FILE = "boxes.json"


def _pattern_mask(pattern, side, phase):
  """bool [side, side]: where the patch takes its first colour (period 4 px, 2 on, 2 off)."""
  y, x = np.mgrid[0:side, 0:side] + phase
  if pattern == "horizontal":
    return (y // 2) % 2 == 0
  if pattern == "vertical":
    return (x // 2) % 2 == 0
  if pattern == "diagonal":
    return ((x + y) // 2) % 2 == 0
  if pattern == "checker":
    return ((x // 2) + (y // 2)) % 2 == 0
  raise ValueError(f"Unknown pattern {pattern!r}; known: {CLASSES}.")


def _colour(rng):
  return rng.uniform(30, 255, 3) * (rng.uniform(0.6, 1.0, 3) > 0.5) + rng.uniform(0, 40, 3)


def _clutter(image, rng, count):
  """Class-blind marks: line segments, dots and small rings in random colours."""
  size = image.shape[0]
  y, x = np.mgrid[0:size, 0:size] + 0.5
  for _ in range(count):
    kind = rng.integers(3)
    colour = _colour(rng)
    cy, cx = rng.uniform(0, size, 2)
    if kind == 0:  # a 1-px line segment
      angle, length = rng.uniform(0, np.pi), rng.uniform(size * 0.1, size * 0.3)
      t = np.linspace(-length / 2, length / 2, int(length * 2))
      ys = np.clip((cy + t * np.sin(angle)).astype(int), 0, size - 1)
      xs = np.clip((cx + t * np.cos(angle)).astype(int), 0, size - 1)
      image[ys, xs] = colour
    elif kind == 1:  # a dot
      r = rng.uniform(1.0, 2.0)
      image[(y - cy) ** 2 + (x - cx) ** 2 <= r * r] = colour
    else:  # a thin ring
      r = rng.uniform(3.0, size * 0.08)
      d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
      image[np.abs(d - r) <= 0.6] = colour


def make_image(pattern, rng, size=48, clutter=10, noise=12.0):
  """(uint8 [size, size, 3], box [top, left, bottom, right] with bottom/right exclusive); the object's side is
  22-31 % of the image's."""
  object_side = (round(size * 0.22), round(size * 0.31))
  corners = rng.uniform(40, 200, (2, 2, 3))
  fy = np.linspace(0, 1, size)[:, None, None]
  fx = np.linspace(0, 1, size)[None, :, None]
  image = ((1 - fy) * ((1 - fx) * corners[0, 0] + fx * corners[0, 1]) +
           fy * ((1 - fx) * corners[1, 0] + fx * corners[1, 1]))
  image = image + rng.normal(0, noise, (size, size, 3))
  _clutter(image, rng, clutter)
  side = int(rng.integers(object_side[0], object_side[1] + 1))
  top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
  mask = _pattern_mask(pattern, side, int(rng.integers(4)))
  patch = image[top:top + side, left:left + side]
  patch[mask] = _colour(rng)
  patch[~mask] = _colour(rng)
  return np.clip(np.round(image), 0, 255).astype(np.uint8), [top, left, top + side, left + side]


def write_localisation_set(root, *, per_class, size=48, seed=0, classes=CLASSES, clutter=10, noise=12.0):
  """Writes root/<pattern>/img_NNNN.png and root/boxes.json; returns {relative path: box}.

  boxes.json sits at the root, beside the class folders, where the folder converter does not look for images.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  boxes = {}
  for name in classes:
    os.makedirs(os.path.join(root, name), exist_ok=True)
  for i in range(per_class):
    for name in classes:  # interleaved, so a smaller per_class gives a prefix of the same images
      image, box = make_image(name, rng, size, clutter=clutter, noise=noise)
      relative = f"{name}/img_{i:04d}.png"
      Image.fromarray(image).save(os.path.join(root, relative))
      boxes[relative] = box
  with open(os.path.join(root, BOXES_FILE), "w", encoding="utf-8") as f:
    json.dump(boxes, f, indent=1, sort_keys=True)
  return boxes


def hit(heatmap, box, tolerance):
  """True when the heatmap's maximum (the centre of its pixels, for a plateau) lies in `box` grown by `tolerance`
  pixels. A blank or flat heatmap points nowhere: a miss."""
  heatmap = np.asarray(heatmap)
  top, left, bottom, right = box
  peaks = np.argwhere(heatmap == heatmap.max())
  if heatmap.max() <= 0 or len(peaks) == heatmap.size:
    return False
  y, x = peaks.mean(axis=0)
  return bool(top - tolerance <= y <= bottom - 1 + tolerance and left - tolerance <= x <= right - 1 + tolerance)


def random_baseline(boxes, size, tolerance):
  """The score of a heatmap maximum placed uniformly at random: the mean share of the image the grown box covers."""
  shares = []
  for top, left, bottom, right in boxes:
    h = min(bottom + tolerance, size) - max(top - tolerance, 0)
    w = min(right + tolerance, size) - max(left - tolerance, 0)
    shares.append(h * w / float(size * size))
  return float(np.mean(shares))


def score(heatmaps, boxes, correct, tolerance):
  """(pointing-game score over the correctly classified images, number of them)."""
  hits = [hit(h, b, tolerance) for h, b, ok in zip(heatmaps, boxes, correct) if ok]
  return (float(np.mean(hits)) if hits else float("nan")), len(hits)
