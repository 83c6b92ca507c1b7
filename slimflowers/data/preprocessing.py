"""TF-Slim's preprocessing factory: per-image train and eval recipes, with stateless (seeded) randomness.

    from slimflowers.data import preprocessing
    image = preprocessing.preprocess_train(jpeg_bytes, 224, "inception", seed=tf.constant([0, 17], tf.int64))
    image = preprocessing.preprocess_eval(jpeg_bytes, 224, "inception")   # float32 [224, 224, 3] in [-1, 1]

The recipes (research/slim/preprocessing; SOURCES.md §4), each a train and an eval branch:
- `inception` (inception_preprocessing.py; Inception, MobileNet, Xception): train = distorted
  bounding-box crop (min_object_covered 0.1, aspect 3/4..4/3, area `crop_area_range`, TF-Slim's
  0.05..1, 100 attempts) decoded with `decode_and_crop_jpeg` (only the crop is decoded), bilinear
  resize, random flip, colour distortion as one affine colour map (see _distort_color) fused with
  the normalization, applied before or after the resize, whichever touches fewer pixels.
  `color_distortion`: "fast" (the default, as TF-Slim's default fast_mode=True: brightness then
  saturation), "full" (TF-Slim's fast_mode=False distortions in its ordering 0: brightness,
  saturation, hue, contrast) or "none". Eval = central crop 0.875 (again decoding only the crop),
  resize. Output in [-1, 1] (Keras "tf" mode).
- `vgg` (alias `caffe`; vgg_preprocessing.py; VGG, ResNet v1): train = resize the smaller side to a
  random size in [256, 512] * image_size / 224, random crop, flip; eval = smaller side to
  256 * image_size / 224, central crop. Output RGB->BGR minus the ImageNet means (Keras
  "caffe" mode, what keras.applications ResNet50 weights expect).
- `cifarnet` (cifarnet_preprocessing.py): train = pad 4 px on each side, random crop back to the
  size, flip, random brightness (max delta 63 of 255) then contrast (0.2..1.8), per-image
  standardization; eval = crop or pad to the size, per-image standardization.
- `lenet` (lenet_preprocessing.py): train = eval = crop or pad to the size, (x - 128) / 128. No
  augmentation at all.
TF-Slim's cifarnet and lenet recipes assume images already at about the output size (CIFAR's
32 px, MNIST's 28): larger images are first resized to image_size x image_size here (bilinear),
which is the identity for images of the output size.

`random_flip=False` turns the flip off in every recipe (text, digits, anything whose mirror
image is another class). Every random choice takes its seed from `seed` (shape [2] int64)
through stateless ops, so an image's augmentation is a pure function of (seed, image): the
input pipeline seeds it with (run seed, element index) and a resumed run repeats it exactly.
"""
import dataclasses
import math

import tensorflow as tf

COLOR_DISTORTIONS = ("fast", "full", "none")
DEFAULT_CROP_AREA_RANGE = (0.05, 1.0)  # TF-Slim inception train: sample_distorted_bounding_box area_range
MIN_CROP_SOURCE_PX = 8  # a crop side below this many source pixels holds nothing recognizable (trainer warns)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """One preprocessing_factory recipe's numbers; the train and eval paths and describe() read them.

  normalization: "scale" (x / divisor + offset), "standardize" (per image) or "caffe" (RGB -> BGR, minus
  means_bgr). train: "distorted_box" (inception), "random_smaller_side" (vgg), "pad_and_crop" (cifarnet)
  or "crop_or_pad" (lenet); eval: "central_fraction" (inception), "smaller_side" (vgg) or "crop_or_pad".
  smaller_side: (eval and smallest train, largest train) shorter side at 224 px, scaled with the image size.
  resize_first: photos are first resized to the output size (TF-Slim's cifarnet and lenet assume images at
  about that size already).
  """
  train: str
  eval: str
  normalization: str
  divisor: float = 1.0
  offset: float = 0.0
  means_bgr: tuple = None
  central_fraction: float = None
  smaller_side: tuple = None
  resize_first: bool = False
  padding: int = 0
  brightness: float = 0.0   # of 255: random_brightness(max_delta)
  contrast: tuple = None    # random_contrast(lower, upper)


# TF-Slim's research/slim/preprocessing (SOURCES.md §4); keras.applications' caffe mode for the BGR means.
RECIPES = {
    "inception": Recipe(train="distorted_box", eval="central_fraction", normalization="scale", divisor=127.5,
                        offset=-1.0, central_fraction=0.875),
    "vgg": Recipe(train="random_smaller_side", eval="smaller_side", normalization="caffe",
                  means_bgr=(103.939, 116.779, 123.68), smaller_side=(256, 512)),
    "cifarnet": Recipe(train="pad_and_crop", eval="crop_or_pad", normalization="standardize", resize_first=True,
                       padding=4, brightness=63.0, contrast=(0.2, 1.8)),
    "lenet": Recipe(train="crop_or_pad", eval="crop_or_pad", normalization="scale", divisor=128.0, offset=-1.0,
                    resize_first=True),
}
ALIASES = {"caffe": "vgg"}
# The flag's choices: each recipe, followed by its aliases.
PREPROCESSING_NAMES = tuple(n for name in RECIPES for n in (name, *[a for a, to in ALIASES.items() if to == name]))
# The inception train crop: tf.image.sample_distorted_bounding_box's arguments in TF-Slim.
_BOX = {"min_object_covered": 0.1, "aspect_ratio_range": (3. / 4., 4. / 3.), "max_attempts": 100}


def recipe(preprocessing_name):
  """The Recipe of a name or alias; a ValueError listing the known names for another."""
  check_names(preprocessing_name)
  return RECIPES[ALIASES.get(preprocessing_name, preprocessing_name)]


def crop_area_range(cfg):
  """The inception crop's (min, max) area fraction from the resolved flags (--crop_area_range)."""
  value = getattr(cfg, "crop_area_range", None)
  return tuple(float(v) for v in value) if value else DEFAULT_CROP_AREA_RANGE


def check_names(preprocessing_name, color_distortion="fast", area_range=DEFAULT_CROP_AREA_RANGE):
  """Raises a ValueError listing the known values for an unknown recipe, colour distortion or crop range."""
  if preprocessing_name not in PREPROCESSING_NAMES:
    raise ValueError(f"Unknown preprocessing {preprocessing_name!r}. Known: {', '.join(PREPROCESSING_NAMES)}.")
  if color_distortion not in COLOR_DISTORTIONS:
    raise ValueError(f"Unknown color_distortion {color_distortion!r}. Known: {', '.join(COLOR_DISTORTIONS)}.")
  lo, hi = area_range
  if not 0.0 < lo <= hi <= 1.0:
    raise ValueError(f"--crop_area_range={lo},{hi}: use MIN,MAX with 0 < MIN <= MAX <= 1 (fractions of the image "
                     f"area; TF-Slim's {DEFAULT_CROP_AREA_RANGE[0]},{DEFAULT_CROP_AREA_RANGE[1]}).")


def normalize(image_0_255, preprocessing_name):
  """A float image in [0, 255] (RGB; [H, W, 3] or a batch) -> what the net expects."""
  r = recipe(preprocessing_name)
  image = tf.cast(image_0_255, tf.float32)
  if r.normalization == "scale":
    return image / r.divisor + r.offset
  if r.normalization == "standardize":
    return tf.image.per_image_standardization(image)
  return image[..., ::-1] - tf.constant(r.means_bgr, tf.float32)


def denormalize(image, preprocessing_name):
  """Back to uint8 RGB [0, 255] (TensorBoard image summaries); cifarnet's standardization is shown min-max scaled."""
  r = recipe(preprocessing_name)
  if r.normalization == "scale":
    image = (image - r.offset) * r.divisor
  elif r.normalization == "standardize":  # (x - mean) / std is not invertible per image: stretch to [0, 255]
    lo = tf.reduce_min(image, axis=[-3, -2, -1], keepdims=True)
    hi = tf.reduce_max(image, axis=[-3, -2, -1], keepdims=True)
    image = (image - lo) / tf.maximum(hi - lo, 1e-6) * 255.0
  else:
    image = (image + tf.constant(r.means_bgr, tf.float32))[..., ::-1]
  return tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)


def describe(preprocessing_name, image_size):
  """What an app must do to a photo before calling the exported model (export.json), in words and numbers."""
  r = recipe(preprocessing_name)
  size = f"{image_size}x{image_size}"
  if r.eval == "central_fraction":
    step = f"central crop {r.central_fraction} of each side, bilinear resize to {size}"
  elif r.eval == "smaller_side":
    step = f"resize the shorter side to {_smaller_sides(r, image_size)[0]} (bilinear), central crop {size}"
  else:
    step = f"bilinear resize to {size}"
  out = {"preprocessing_name": preprocessing_name, "image_size": image_size, "input_layout": "NHWC float32",
         "resize_and_crop": step, "channel_order": "RGB"}
  if r.normalization == "scale":
    out.update(formula=f"x / {r.divisor:g} {'-' if r.offset < 0 else '+'} {abs(r.offset):g}", scale=1 / r.divisor,
               offset=r.offset)
  elif r.normalization == "standardize":
    out.update(formula="per-image standardization: (x - mean(x)) / max(std(x), 1/sqrt(H*W*3))")
  else:
    out.update(formula="RGB -> BGR, then x - mean", channel_order="BGR", mean=list(r.means_bgr), scale=1.0)
  return out


_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as tf.image.rgb_to_grayscale


def _distort_color(image, seeds, color_distortion, normalize_inception=False):
  """TF-Slim distort_color (same distortions and ranges, ordering 0) as ONE affine colour map.

  TF-Slim converts to HSV for saturation and hue, which costs ~7 ms per 224 px image on one
  core, 5x the JPEG decode: the reader would starve the GPU. Here the distortions compose
  into y = A x + b with one 3x3 matrix, so the per-pixel cost is one small matmul, an add
  and a clip:
  - brightness: + delta, |delta| <= 32/255 of the range;
  - saturation: interpolation with the luma, x0.5..1.5 (luma weights sum to 1, so it keeps
    a brightness shift as it is: b stays a scalar in "fast" mode);
  - "full" only: hue, a rotation about the grey axis by +-0.2 turn, and contrast, x0.5..1.5
    around the image's mean colour (b becomes a colour vector).
  `image` in [0, 255]; result clipped to [0, 255], or, with `normalize_inception`, normalized as
  RECIPES["inception"] says in the same affine step (clipping commutes with that increasing map).
  `seeds`: [4, 2] int64.
  """
  delta = tf.random.stateless_uniform([], seeds[0], -32.0, 32.0)
  sat = tf.random.stateless_uniform([], seeds[1], 0.5, 1.5)
  eye = tf.eye(3)
  luma = tf.constant([_LUMA], tf.float32)  # [1, 3]
  scale = sat * eye + (1.0 - sat) * tf.ones([3, 1]) * luma  # rows: s*x + (1-s)*luma(x)
  offset = delta  # y = S (x + delta) = S x + delta, since S maps grey to itself
  if color_distortion == "full":
    angle = tf.random.stateless_uniform([], seeds[2], -0.2, 0.2) * 2.0 * math.pi
    contrast = tf.random.stateless_uniform([], seeds[3], 0.5, 1.5)
    k = tf.constant([1.0, 1.0, 1.0], tf.float32) / math.sqrt(3.0)  # Rodrigues rotation about the grey axis
    cross = tf.constant([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], tf.float32) / math.sqrt(3.0)
    hue_m = tf.cos(angle) * eye + tf.sin(angle) * cross + (1.0 - tf.cos(angle)) * tf.tensordot(k, k, axes=0)
    m = tf.matmul(hue_m, scale)  # y = m x + delta (the rotation also maps grey to itself)
    # The contrast pivot: the mean colour, from every 4th row and column (a full reduce_mean costs as much as
    # the colour map itself; the subsampled mean differs by a fraction of a grey level).
    mean_y = tf.linalg.matvec(m, tf.reduce_mean(image[::4, ::4], axis=[0, 1])) + delta
    # z = c * (y - mean_y) + mean_y = (c m) x + (c delta + (1 - c) mean_y)
    scale = contrast * m
    offset = contrast * delta + (1.0 - contrast) * mean_y
  lo, hi = 0.0, 255.0
  if normalize_inception:
    r = RECIPES["inception"]
    scale, offset, lo, hi = scale / r.divisor, offset / r.divisor + r.offset, lo / r.divisor + r.offset, \
        hi / r.divisor + r.offset
  out = tf.matmul(tf.reshape(image, [-1, 3]), scale, transpose_b=True) + offset
  return tf.clip_by_value(tf.reshape(out, tf.shape(image)), lo, hi)


def _resize_smaller_side(image, smallest):
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  scale = tf.cast(smallest, tf.float32) / tf.minimum(h, w)
  new_h = tf.maximum(tf.cast(tf.math.round(h * scale), tf.int32), smallest)
  new_w = tf.maximum(tf.cast(tf.math.round(w * scale), tf.int32), smallest)
  return tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear")


def _smaller_sides(r, image_size):
  """The recipe's shorter-side sizes (eval and smallest train, largest train) for this output size."""
  return tuple(int(side * image_size / 224) for side in r.smaller_side)


def _central_window(h, w, fraction):
  """[y, x, h, w] of the central `fraction` of each side (at least one pixel)."""
  crop_h = tf.maximum(tf.cast(tf.cast(h, tf.float32) * fraction, tf.int32), 1)
  crop_w = tf.maximum(tf.cast(tf.cast(w, tf.float32) * fraction, tf.int32), 1)
  return tf.stack([(h - crop_h) // 2, (w - crop_w) // 2, crop_h, crop_w])


def _to_size(image, image_size, r):
  """A recipe with `resize_first` (cifarnet, lenet) on larger photos: bilinear resize to the output size
  (identity when already that size). Other recipes: the image as it is."""
  if not r.resize_first:
    return image
  shape = tf.shape(image)
  same = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))
  image = tf.cast(image, tf.float32)
  return tf.cond(same, lambda: image, lambda: tf.image.resize(image, [image_size, image_size], method="bilinear"))


class _JpegSource:
  """The training recipes read an image through this: JPEG bytes, decoding only what is needed."""

  def __init__(self, image_bytes):
    self.image_bytes = image_bytes

  def shape(self):
    return tf.image.extract_jpeg_shape(self.image_bytes)

  def crop(self, window):  # [y, x, h, w]: decodes only the window
    return tf.image.decode_and_crop_jpeg(self.image_bytes, window, channels=3)

  def full(self):
    return tf.io.decode_jpeg(self.image_bytes, channels=3)


class _PixelSource:
  """Already decoded uint8 pixels [H, W, 3] (the input pipeline's decoded-image cache)."""

  def __init__(self, image):
    self.image = image

  def shape(self):
    return tf.shape(self.image)

  def crop(self, window):
    return tf.slice(self.image, tf.stack([window[0], window[1], 0]), tf.stack([window[2], window[3], 3]))

  def full(self):
    return self.image


def preprocess_train(image_bytes, image_size, preprocessing_name, seed, augment_fn=None, color_distortion="fast",
                     random_flip=True, area_range=DEFAULT_CROP_AREA_RANGE):
  """JPEG bytes -> float32 [image_size, image_size, 3] training image, normalized for the net.

  `augment_fn`, if given, maps a float [0, 255] image to another (RandAugment, ...), applied
  before normalization. `color_distortion` and `area_range` (inception only), `random_flip`:
  see the module doc.
  """
  return _preprocess_train(_JpegSource(image_bytes), image_size, preprocessing_name, seed, augment_fn,
                           color_distortion, random_flip, area_range)


def preprocess_train_image(image, image_size, preprocessing_name, seed, augment_fn=None, color_distortion="fast",
                           random_flip=True, area_range=DEFAULT_CROP_AREA_RANGE):
  """preprocess_train on decoded uint8 pixels [H, W, 3]: the same draws, the crop cut from the pixels.

  (The inception crop then differs from decode_and_crop_jpeg's by at most a grey level near its
  edges, where the JPEG decoder upsamples chroma with or without the pixels outside.)
  """
  return _preprocess_train(_PixelSource(image), image_size, preprocessing_name, seed, augment_fn, color_distortion,
                           random_flip, area_range)


def _preprocess_train(source, image_size, preprocessing_name, seed, augment_fn, color_distortion, random_flip,
                      area_range):
  check_names(preprocessing_name, color_distortion, area_range)
  r = recipe(preprocessing_name)
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
  if r.train == "distorted_box":
    fused = augment_fn is None  # colour map and normalization in one step (see _distort_color)
    image = _distorted_box_train(source, image_size, preprocessing_name, seeds, color_distortion, random_flip,
                                 area_range, fused)
    if fused:
      return image
  elif r.train == "random_smaller_side":
    lo, hi = _smaller_sides(r, image_size)
    smallest = tf.random.stateless_uniform([], seed=seeds[0], minval=lo, maxval=hi + 1, dtype=tf.int32)
    image = _resize_smaller_side(source.full(), smallest)
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=seeds[1])
    if random_flip:
      image = tf.image.stateless_random_flip_left_right(image, seed=seeds[2])
  elif r.train == "pad_and_crop":
    image = _to_size(source.full(), image_size, r)
    image = tf.pad(image, [[r.padding, r.padding], [r.padding, r.padding], [0, 0]])
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=seeds[0])
    if random_flip:
      image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    image = tf.image.stateless_random_brightness(image, r.brightness, seed=seeds[2])
    image = tf.image.stateless_random_contrast(image, *r.contrast, seed=seeds[3])
  else:  # crop_or_pad (lenet): no augmentation
    image = _crop_or_pad(_to_size(source.full(), image_size, r), image_size)
  image.set_shape([image_size, image_size, 3])
  if augment_fn is not None:
    image = tf.cast(augment_fn(tf.clip_by_value(image, 0.0, 255.0)), tf.float32)
    image.set_shape([image_size, image_size, 3])
  return normalize(image, preprocessing_name)


def _distorted_box_train(source, image_size, preprocessing_name, seeds, color_distortion, random_flip, area_range,
                         fused):
  """The inception train recipe: distorted bounding-box crop, resize, colour, flip; normalized when `fused`."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      source.shape(), bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]), seed=seeds[0],
      area_range=tuple(area_range), use_image_if_no_bounding_boxes=True, **_BOX)
  crop = source.crop(tf.stack([begin[0], begin[1], size[0], size[1]]))
  flip = tf.logical_and(tf.constant(bool(random_flip)), tf.random.stateless_uniform([], seed=seeds[1]) < 0.5)

  def colour_and_flip(x):
    if color_distortion != "none":
      x = _distort_color(x, seeds[2:6], color_distortion, normalize_inception=fused)
    elif fused:
      x = normalize(x, preprocessing_name)
    return tf.cond(flip, lambda: tf.reverse(x, [1]), lambda: x)

  def resize(x):
    return tf.image.resize(x, [image_size, image_size], method="bilinear")

  # Bilinear resizing takes convex combinations of pixels, so it commutes with the affine colour map and
  # with the flip: apply those on whichever of crop and output has fewer pixels (clipping happens on that
  # image; the result stays in range either way).
  image = tf.cond(size[0] * size[1] < image_size * image_size,
                  lambda: resize(colour_and_flip(tf.cast(crop, tf.float32))),
                  lambda: colour_and_flip(resize(crop)))
  image.set_shape([image_size, image_size, 3])
  return image


def _crop_or_pad(image, image_size):
  return tf.image.resize_with_crop_or_pad(image, image_size, image_size)


def preprocess_eval_image(image, image_size, preprocessing_name):
  """A decoded uint8 RGB image [H, W, 3] -> float32 [image_size, image_size, 3] evaluation image.

  The evaluator's recipe on pixels (exported models' `serving_images`, non-JPEG inputs).
  For JPEG bytes `preprocess_eval` decodes only the inception crop; on pixels the crop is cut
  after decoding, which differs from it by at most a grey level near the crop's edges.
  """
  r = recipe(preprocessing_name)
  if r.eval == "central_fraction":
    shape = tf.shape(image)
    window = _central_window(shape[0], shape[1], r.central_fraction)
    image = tf.slice(image, tf.stack([window[0], window[1], 0]), tf.stack([window[2], window[3], 3]))
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
  elif r.eval == "smaller_side":
    image = _resize_smaller_side(image, _smaller_sides(r, image_size)[0])
    image = _crop_or_pad(image, image_size)
  else:  # crop_or_pad (cifarnet, lenet)
    image = _crop_or_pad(_to_size(image, image_size, r), image_size)
  image.set_shape([image_size, image_size, 3])
  return normalize(image, preprocessing_name)


def preprocess_eval(image_bytes, image_size, preprocessing_name):
  """JPEG bytes -> float32 [image_size, image_size, 3] evaluation image (deterministic)."""
  r = recipe(preprocessing_name)
  if r.eval == "central_fraction":
    shape = tf.image.extract_jpeg_shape(image_bytes)
    window = _central_window(shape[0], shape[1], r.central_fraction)
    image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)  # decodes only the crop
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    image.set_shape([image_size, image_size, 3])
    return normalize(image, preprocessing_name)
  return preprocess_eval_image(tf.io.decode_jpeg(image_bytes, channels=3), image_size, preprocessing_name)
