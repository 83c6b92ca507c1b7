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
import math

import tensorflow as tf

PREPROCESSING_NAMES = ("inception", "vgg", "caffe", "cifarnet", "lenet")
COLOR_DISTORTIONS = ("fast", "full", "none")
# keras.applications.imagenet_utils caffe mode: BGR channel means.
_CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)
_CENTRAL_FRACTION = 0.875  # TF-Slim inception eval
DEFAULT_CROP_AREA_RANGE = (0.05, 1.0)  # TF-Slim inception train: sample_distorted_bounding_box area_range
MIN_CROP_SOURCE_PX = 8  # a crop side below this many source pixels holds nothing recognizable (trainer warns)
_CIFAR_PADDING = 4
_CIFAR_BRIGHTNESS = 63.0  # of 255: TF-Slim's random_brightness(max_delta=63) on [0, 255] floats
_CIFAR_CONTRAST = (0.2, 1.8)
_LENET_OFFSET = 128.0


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
  check_names(preprocessing_name)
  image = tf.cast(image_0_255, tf.float32)
  if preprocessing_name == "inception":
    return image / 127.5 - 1.0
  if preprocessing_name == "lenet":
    return (image - _LENET_OFFSET) / _LENET_OFFSET
  if preprocessing_name == "cifarnet":
    return tf.image.per_image_standardization(image)
  return image[..., ::-1] - tf.constant(_CAFFE_MEANS_BGR, tf.float32)


def denormalize(image, preprocessing_name):
  """Back to uint8 RGB [0, 255] (TensorBoard image summaries); cifarnet's standardization is shown min-max scaled."""
  check_names(preprocessing_name)
  if preprocessing_name == "inception":
    image = (image + 1.0) * 127.5
  elif preprocessing_name == "lenet":
    image = image * _LENET_OFFSET + _LENET_OFFSET
  elif preprocessing_name == "cifarnet":  # (x - mean) / std is not invertible per image: stretch to [0, 255]
    lo = tf.reduce_min(image, axis=[-3, -2, -1], keepdims=True)
    hi = tf.reduce_max(image, axis=[-3, -2, -1], keepdims=True)
    image = (image - lo) / tf.maximum(hi - lo, 1e-6) * 255.0
  else:
    image = (image + tf.constant(_CAFFE_MEANS_BGR, tf.float32))[..., ::-1]
  return tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)


def describe(preprocessing_name, image_size):
  """What an app must do to a photo before calling the exported model (export.json), in words and numbers."""
  check_names(preprocessing_name)
  steps = {
      "inception": f"central crop {_CENTRAL_FRACTION} of each side, bilinear resize to {image_size}x{image_size}",
      "vgg": (f"resize the shorter side to {int(256 * image_size / 224)} (bilinear), central crop "
              f"{image_size}x{image_size}"),
      "cifarnet": f"bilinear resize to {image_size}x{image_size}",
      "lenet": f"bilinear resize to {image_size}x{image_size}",
  }
  out = {"preprocessing_name": preprocessing_name, "image_size": image_size, "input_layout": "NHWC float32",
         "resize_and_crop": steps.get(preprocessing_name, steps["vgg"]), "channel_order": "RGB"}
  if preprocessing_name == "inception":
    out.update(formula="x / 127.5 - 1", scale=1 / 127.5, offset=-1.0)
  elif preprocessing_name == "lenet":
    out.update(formula="(x - 128) / 128", scale=1 / 128, offset=-1.0)
  elif preprocessing_name == "cifarnet":
    out.update(formula="per-image standardization: (x - mean(x)) / max(std(x), 1/sqrt(H*W*3))")
  else:
    out.update(formula="RGB -> BGR, then x - mean", channel_order="BGR", mean=list(_CAFFE_MEANS_BGR), scale=1.0)
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
  `image` in [0, 255]; result clipped to [0, 255], or, with `normalize_inception`, mapped
  to [-1, 1] in the same affine step (clipping commutes with that increasing map).
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
    scale, offset, lo, hi = scale / 127.5, offset / 127.5 - 1.0, -1.0, 1.0
  out = tf.matmul(tf.reshape(image, [-1, 3]), scale, transpose_b=True) + offset
  return tf.clip_by_value(tf.reshape(out, tf.shape(image)), lo, hi)


def _resize_smaller_side(image, smallest):
  shape = tf.shape(image)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  scale = tf.cast(smallest, tf.float32) / tf.minimum(h, w)
  new_h = tf.maximum(tf.cast(tf.math.round(h * scale), tf.int32), smallest)
  new_w = tf.maximum(tf.cast(tf.math.round(w * scale), tf.int32), smallest)
  return tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear")


def _vgg_sizes(image_size):
  return int(256 * image_size / 224), int(512 * image_size / 224)


def _to_size(image, image_size):
  """cifarnet/lenet on larger photos: bilinear resize to the output size (identity when already that size)."""
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
  seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
  if preprocessing_name == "inception":
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        source.shape(), bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]), seed=seeds[0],
        min_object_covered=0.1, aspect_ratio_range=(3. / 4., 4. / 3.), area_range=tuple(area_range),
        max_attempts=100, use_image_if_no_bounding_boxes=True)
    crop = source.crop(tf.stack([begin[0], begin[1], size[0], size[1]]))
    flip = tf.logical_and(tf.constant(bool(random_flip)), tf.random.stateless_uniform([], seed=seeds[1]) < 0.5)
    fused = augment_fn is None  # colour map and normalization in one step (see _distort_color)

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
    if fused:
      image.set_shape([image_size, image_size, 3])
      return image
  elif preprocessing_name in ("vgg", "caffe"):
    lo, hi = _vgg_sizes(image_size)
    smallest = tf.random.stateless_uniform([], seed=seeds[0], minval=lo, maxval=hi + 1, dtype=tf.int32)
    image = _resize_smaller_side(source.full(), smallest)
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=seeds[1])
    if random_flip:
      image = tf.image.stateless_random_flip_left_right(image, seed=seeds[2])
  elif preprocessing_name == "cifarnet":
    image = _to_size(source.full(), image_size)
    image = tf.pad(image, [[_CIFAR_PADDING, _CIFAR_PADDING], [_CIFAR_PADDING, _CIFAR_PADDING], [0, 0]])
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=seeds[0])
    if random_flip:
      image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    image = tf.image.stateless_random_brightness(image, _CIFAR_BRIGHTNESS, seed=seeds[2])
    image = tf.image.stateless_random_contrast(image, *_CIFAR_CONTRAST, seed=seeds[3])
  else:  # lenet: no augmentation
    image = _crop_or_pad(_to_size(source.full(), image_size), image_size)
  image.set_shape([image_size, image_size, 3])
  if augment_fn is not None:
    image = tf.cast(augment_fn(tf.clip_by_value(image, 0.0, 255.0)), tf.float32)
    image.set_shape([image_size, image_size, 3])
  return normalize(image, preprocessing_name)


def _crop_or_pad(image, image_size):
  return tf.image.resize_with_crop_or_pad(image, image_size, image_size)


def preprocess_eval_image(image, image_size, preprocessing_name):
  """A decoded uint8 RGB image [H, W, 3] -> float32 [image_size, image_size, 3] evaluation image.

  The evaluator's recipe on pixels (exported models' `serving_images`, non-JPEG inputs).
  For JPEG bytes `preprocess_eval` decodes only the inception crop; on pixels the crop is cut
  after decoding, which differs from it by at most a grey level near the crop's edges.
  """
  check_names(preprocessing_name)
  if preprocessing_name == "inception":
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    crop_h = tf.maximum(tf.cast(tf.cast(h, tf.float32) * _CENTRAL_FRACTION, tf.int32), 1)
    crop_w = tf.maximum(tf.cast(tf.cast(w, tf.float32) * _CENTRAL_FRACTION, tf.int32), 1)
    image = image[(h - crop_h) // 2:(h - crop_h) // 2 + crop_h, (w - crop_w) // 2:(w - crop_w) // 2 + crop_w]
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
  elif preprocessing_name in ("vgg", "caffe"):
    image = _resize_smaller_side(image, _vgg_sizes(image_size)[0])
    image = _crop_or_pad(image, image_size)
  else:  # cifarnet, lenet
    image = _crop_or_pad(_to_size(image, image_size), image_size)
  image.set_shape([image_size, image_size, 3])
  return normalize(image, preprocessing_name)


def preprocess_eval(image_bytes, image_size, preprocessing_name):
  """JPEG bytes -> float32 [image_size, image_size, 3] evaluation image (deterministic)."""
  check_names(preprocessing_name)
  if preprocessing_name == "inception":
    shape = tf.image.extract_jpeg_shape(image_bytes)
    h, w = shape[0], shape[1]
    crop_h = tf.maximum(tf.cast(tf.cast(h, tf.float32) * _CENTRAL_FRACTION, tf.int32), 1)
    crop_w = tf.maximum(tf.cast(tf.cast(w, tf.float32) * _CENTRAL_FRACTION, tf.int32), 1)
    window = tf.stack([(h - crop_h) // 2, (w - crop_w) // 2, crop_h, crop_w])
    image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)  # decodes only the crop
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    image.set_shape([image_size, image_size, 3])
    return normalize(image, preprocessing_name)
  return preprocess_eval_image(tf.io.decode_jpeg(image_bytes, channels=3), image_size, preprocessing_name)
