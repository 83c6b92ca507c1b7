r"""A generated localisation set and the pointing game (Zhang et al. 2016, SOURCES.md §9): is Grad-CAM looking
at the object?

    boxes = pointing_game.write_localisation_set("data/where_photos", per_class=300, size=64)
    # data/where_photos/<shape>/img_0000.png ... and boxes.json {relative path: [top, left, bottom, right]}

Each image is a cluttered background (a random colour gradient, pixel noise, and line segments, dots and
small rings in random colours, drawn the same way whatever the class) with one class-defining object, a
filled shape (square, disc, triangle or cross) in a random colour at a random place; its box is recorded.
Only the object's shape tells the classes apart, so a net that classifies correctly must have found it.

The pointing game: for each correctly classified image, a hit when the heatmap's maximum lies inside the
object's box grown by `tolerance` pixels on each side. Score = hits / (hits + misses). A heatmap that points
at random scores about the grown box's share of the image (`random_baseline`).
"""
import json
import os

import numpy as np

SHAPES = ("square", "disc", "triangle", "cross")
BOXES_FILE = "boxes.json"


def _shape_mask(shape, side):
  """bool [side, side]: the filled shape."""
  y, x = np.mgrid[0:side, 0:side] + 0.5
  c = side / 2.0
  if shape == "square":
    margin = side * 0.1
    return (y > margin) & (y < side - margin) & (x > margin) & (x < side - margin)
  if shape == "disc":
    return (y - c) ** 2 + (x - c) ** 2 <= (side / 2.0) ** 2
  if shape == "triangle":  # apex up
    return (y >= 0) & (np.abs(x - c) <= y / 2.0)
  if shape == "cross":
    arm = side / 6.0
    return (np.abs(y - c) <= arm) | (np.abs(x - c) <= arm)
  raise ValueError(f"Unknown shape {shape!r}; known: {SHAPES}.")


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


def make_image(shape, rng, size=64, object_side=(14, 20), clutter=10, noise=12.0):
  """(uint8 [size, size, 3], box [top, left, bottom, right] with bottom/right exclusive)."""
  corners = rng.uniform(40, 200, (2, 2, 3))
  fy = np.linspace(0, 1, size)[:, None, None]
  fx = np.linspace(0, 1, size)[None, :, None]
  image = ((1 - fy) * ((1 - fx) * corners[0, 0] + fx * corners[0, 1]) +
           fy * ((1 - fx) * corners[1, 0] + fx * corners[1, 1]))
  image = image + rng.normal(0, noise, (size, size, 3))
  _clutter(image, rng, clutter)
  side = int(rng.integers(object_side[0], object_side[1] + 1))
  top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
  mask = _shape_mask(shape, side)
  colour = _colour(rng)
  patch = image[top:top + side, left:left + side]
  patch[mask] = colour + rng.normal(0, 6, (int(mask.sum()), 3))
  return np.clip(np.round(image), 0, 255).astype(np.uint8), [top, left, top + side, left + side]


def write_localisation_set(root, *, per_class, size=64, seed=0, shapes=SHAPES, clutter=10, noise=12.0):
  """Writes root/<shape>/img_NNNN.png and root/boxes.json; returns {relative path: box}.

  boxes.json sits at the root, beside the class folders, where the folder converter does not look for images.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  boxes = {}
  for shape in shapes:
    os.makedirs(os.path.join(root, shape), exist_ok=True)
  for i in range(per_class):
    for shape in shapes:  # interleaved, so a smaller per_class gives a prefix of the same images
      image, box = make_image(shape, rng, size, clutter=clutter, noise=noise)
      relative = f"{shape}/img_{i:04d}.png"
      Image.fromarray(image).save(os.path.join(root, relative))
      boxes[relative] = box
  with open(os.path.join(root, BOXES_FILE), "w", encoding="utf-8") as f:
    json.dump(boxes, f, indent=1, sort_keys=True)
  return boxes


def hit(heatmap, box, tolerance):
  """True when the heatmap's maximum (any of them, if tied) lies in `box` grown by `tolerance` pixels."""
  heatmap = np.asarray(heatmap)
  top, left, bottom, right = box
  peaks = np.argwhere(heatmap == heatmap.max())
  return bool(np.any((peaks[:, 0] >= top - tolerance) & (peaks[:, 0] < bottom + tolerance) &
                     (peaks[:, 1] >= left - tolerance) & (peaks[:, 1] < right + tolerance)))


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
