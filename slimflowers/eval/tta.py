r"""Test-time augmentation: the logits of several views of each image, averaged.

    python eval_image_classifier.py --checkpoint_path=runs/x/eval_validation/best --tta=flip ...
    # eval validation step 800: accuracy=0.8420 ... (ckpt-800, 61.2 img/s, tta=flip: 2 views)

`flip`: the image and its mirror (2 views). `crops`: TF-Slim's 87.5 % central fraction taken at the centre
and at the four corners of the preprocessed image, each resized back to the net's input size, each also
mirrored (10 views, the ten-crop set of Krizhevsky et al. 2012, SOURCES.md §7). The views are made from
the batch the evaluation already reads, inside the same graph, so counting stays exact (each example
once, its averaged logits scored) and the cost is the net run once per view: about 2x and 10x the
time (BENCHMARKS.md measures it). Logits, not probabilities, are averaged, as timm's `--tta` does.
"""
import tensorflow as tf

NONE = "none"
VIEWS = {"none": 1, "flip": 2, "crops": 10}
MODES = tuple(VIEWS)
CROP_FRACTION = 0.875  # TF-Slim's eval central crop


def logits_of(outputs):
  """A net's main logits: the tensor itself, or the "logits" entry of a net with auxiliary outputs."""
  return outputs["logits"] if isinstance(outputs, dict) else outputs


def views(images, mode):
  """The list of view batches of `images` [B, H, W, C] for `mode` (each [B, H, W, C])."""
  if mode == "none":
    return [images]
  if mode == "flip":
    return [images, tf.image.flip_left_right(images)]
  if mode == "crops":
    size = tf.shape(images)[1:3]
    crop = tf.cast(tf.round(tf.cast(size, tf.float32) * CROP_FRACTION), tf.int32)
    rest = size - crop
    offsets = [(rest[0] // 2, rest[1] // 2), (0, 0), (0, rest[1]), (rest[0], 0), (rest[0], rest[1])]
    crops = []
    for dy, dx in offsets:
      piece = images[:, dy:dy + crop[0], dx:dx + crop[1], :]
      crops.append(tf.cast(tf.image.resize(piece, size, method="bilinear"), images.dtype))
    return crops + [tf.image.flip_left_right(c) for c in crops]
  raise ValueError(f"--tta={mode!r} is not one of {', '.join(MODES)}.")


def logits(model, images, mode):
  """`model`'s logits on `images`, averaged over the views of `mode` (float32)."""
  if mode in (None, NONE):
    return tf.cast(logits_of(model(images, training=False)), tf.float32)
  batch = tf.shape(images)[0]
  stacked = tf.concat(views(images, mode), axis=0)  # one call of the net for every view
  out = tf.cast(logits_of(model(stacked, training=False)), tf.float32)
  return tf.reduce_mean(tf.reshape(out, [VIEWS[mode], batch, -1]), axis=0)


def check(mode):
  """Raises ValueError for an unknown mode; returns the mode ('none' for None)."""
  mode = mode or NONE
  if mode not in VIEWS:
    raise ValueError(f"--tta={mode!r} is not one of {', '.join(MODES)}.")
  return mode
