"""One source image -> JPEG bytes the training reader is guaranteed to decode, or a reason to skip it.

    from datasets import images
    jpeg, height, width, notes = images.prepare_image(data, max_image_side=4096)

What happens to an image (the converter calls this once per file, in a worker):
- an RGB JPEG with no EXIF rotation and no side above `max_image_side` is kept
  byte for byte (after a full decode that catches truncation);
- everything else is decoded and re-encoded as RGB JPEG (quality JPEG_QUALITY):
  PNG (also 16-bit and with alpha, which is dropped), GIF (first frame), BMP, WebP,
  grayscale and CMYK JPEG; EXIF orientation is applied (a phone photo stored
  sideways trains upright; `notes` says so); images with a side above
  `max_image_side` are shrunk to it (area resampling; large JPEGs are decoded at
  a reduced scale, so memory stays bounded whatever their size);
- a non-JPEG image above MAX_DECODE_PIXELS (Pillow's decompression-bomb limit) is
  skipped rather than decoded, as is anything unreadable (SkipImage(reason)).
The bytes returned are checked with the reader's own ops (tf.image.extract_jpeg_shape,
tf.io.decode_jpeg): a record that would fail in training is never written.

Decoding uses TensorFlow (as the reader does); Pillow reads headers (size, EXIF
orientation) and decodes huge JPEGs at reduced scale (its `draft` mode).
"""
import io
import warnings

import numpy as np

JPEG_QUALITY = 95
DEFAULT_MAX_IMAGE_SIDE = 4096     # a 4096 x 4096 RGB image decodes to 48 MB: bounded memory per worker
MIN_MAX_IMAGE_SIDE = 32
MAX_DECODE_PIXELS = 2 * 89_478_485  # Pillow's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS)
FORMATS = "JPEG, PNG, GIF, BMP or WebP"
_EXIF_ORIENTATION = 0x0112
_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"BM", "bmp"))


class SkipImage(Exception):
  """This one file cannot be converted; it is skipped and recorded, the conversion goes on."""


def sniff_format(data):
  for magic, fmt in _MAGIC:
    if data.startswith(magic):
      return fmt
  if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
    return "webp"
  return None


def _header(data):
  """(width, height, EXIF orientation 1..8) from the header, without decoding pixels.

  `data`: the file's bytes, or a binary file object (only the header is read from it).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # DecompressionBombWarning: we check sizes ourselves
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
      image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
      width, height = image.size
      try:
        # Pillow looks for a PNG's EXIF by decoding it: never for an image that is refused anyway (a bomb).
        orientation = 1 if width * height > MAX_DECODE_PIXELS else int(
            image.getexif().get(_EXIF_ORIENTATION, 1))
      except Exception:  # pylint: disable=broad-except  (a corrupt EXIF block: ignore the orientation)
        orientation = 1
    except Exception as e:  # pylint: disable=broad-except  (Pillow raises many kinds for bad headers)
      raise SkipImage(f"cannot decode: {_first_line(e)}") from None
    finally:
      Image.MAX_IMAGE_PIXELS = saved
  return width, height, orientation if 1 <= orientation <= 8 else 1


def _first_line(e):
  message = str(e).splitlines()[0] if str(e) else type(e).__name__
  return message.split("}} ")[-1][:200]  # drop TF's "{{function_node ...}}" prefix


def apply_orientation(image, orientation):
  """An [H, W, C] array as EXIF orientation `orientation` says it should be displayed (1 = as stored)."""
  ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
         5: lambda a: a.transpose(1, 0, 2), 6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
         7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: a.transpose(1, 0, 2)[::-1]}
  return np.ascontiguousarray(ops[orientation](image)) if orientation in ops else image


def _decode_jpeg_reduced(data, width, height, scale):
  """A JPEG decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still gives >= `scale` of its size.

  Memory stays bounded whatever the file's size (a 20000 x 20000 photo decodes at 1/8).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
  try:
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (max(1, int(width * scale)), max(1, int(height * scale))))
    return np.asarray(image.convert("RGB"))
  finally:
    Image.MAX_IMAGE_PIXELS = saved


def _resize(image, size):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if tuple(image.shape[:2]) == tuple(size):
    return image
  return tf.cast(tf.round(tf.clip_by_value(tf.image.resize(image, size, method="area"), 0, 255)), tf.uint8).numpy()


def target_scale(width, height, max_image_side, resize_to=None):
  """The factor (<= 1) that brings the longer side to at most `max_image_side` and the shorter to `resize_to`."""
  scale = min(1.0, max_image_side / max(width, height))
  if resize_to:
    scale = min(scale, resize_to / min(width, height))
  return scale


def check_decodable(fmt, width, height, num_bytes):
  """SkipImage for what is never decoded: an empty image, a JPEG whose header claims more pixels than its
  `num_bytes` can hold, a non-JPEG above MAX_DECODE_PIXELS (memory). JPEGs of any real size are fine: they
  are decoded at reduced scale (prepare_image)."""
  if width == 0 or height == 0:
    raise SkipImage("empty image")
  if fmt == "jpeg" and num_bytes * 8 * 64 < width * height:
    # Every 8x8 block costs at least one bit even in a uniform image; fewer bytes than that means a header
    # that claims pixels the file does not hold (libjpeg would only warn and fill them with grey).
    raise SkipImage(f"truncated or corrupt: {num_bytes:,} bytes cannot hold the {width}x{height} pixels its "
                    "header claims")
  if fmt != "jpeg" and width * height > MAX_DECODE_PIXELS:
    raise SkipImage(f"too large to decode safely: {width}x{height} = {width * height / 1e6:.0f} Mpx (more than "
                    f"{MAX_DECODE_PIXELS / 1e6:.0f} Mpx); downsize it first")


def screen_file(f, num_bytes, max_image_side=DEFAULT_MAX_IMAGE_SIDE):
  """From the header of an open image file only: "decode" (an image the readers may decode as it is), "shrink"
  (a JPEG with a side above `max_image_side`: decode it with prepare_image, at reduced scale), or None when the
  header is not one of ours (the decoder will say what it is). Raises SkipImage (check_decodable).

  Memory stays bounded whatever the file claims: predict screens every file with this before decoding it.
  """
  fmt = sniff_format(f.read(16))
  if fmt is None:
    return None
  f.seek(0)
  try:
    width, height, _ = _header(f)
  except SkipImage:
    return None
  check_decodable(fmt, width, height, num_bytes)
  return "shrink" if fmt == "jpeg" and max(width, height) > max_image_side else "decode"


def prepare_image(data, max_image_side=DEFAULT_MAX_IMAGE_SIDE, resize_to=None):
  """Returns (jpeg_bytes, height, width, notes); raises SkipImage(reason) for input that cannot be used.

  `resize_to`: also shrink so the shorter side is at most this (conversion's --resize_to).
  `notes`: what was changed that a user should know ("EXIF orientation 6 applied", "downsized ...").
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  fmt = sniff_format(data)
  if fmt is None:
    raise SkipImage("empty file" if not data else f"not a {FORMATS} image")
  width, height, orientation = _header(data)
  check_decodable(fmt, width, height, len(data))
  notes = []
  scale = target_scale(width, height, max_image_side, resize_to)
  try:
    if fmt == "jpeg" and scale <= 0.5:
      image = _decode_jpeg_reduced(data, width, height, scale)
    elif fmt == "jpeg":
      channels = int(tf.image.extract_jpeg_shape(data).numpy()[2])
      tf.io.decode_jpeg(data, channels=0)  # full decode: a truncated or corrupt file fails here
      if channels == 3 and orientation == 1 and scale == 1.0:
        return data, height, width, notes  # kept byte for byte
      image = tf.io.decode_jpeg(data, channels=3).numpy()  # grayscale / CMYK -> RGB
    else:
      image = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()  # GIF: first frame
  except SkipImage:
    raise
  except Exception as e:  # pylint: disable=broad-except  (TF and Pillow raise many kinds for corrupt data)
    raise SkipImage(f"cannot decode: {_first_line(e)}") from None
  if orientation != 1:
    image = apply_orientation(image, orientation)
    notes.append(f"EXIF orientation {orientation} applied")
  if scale < 1.0:
    shown_h, shown_w = (height, width) if orientation < 5 else (width, height)  # 5..8 swap the sides
    out_h, out_w = max(1, round(shown_h * scale)), max(1, round(shown_w * scale))
    if max(width, height) > max_image_side:
      notes.append(f"downsized from {width}x{height} (--max_image_side={max_image_side})")
    image = _resize(image, (out_h, out_w))
  jpeg = tf.io.encode_jpeg(image, quality=JPEG_QUALITY).numpy()
  height, width = verify_jpeg(jpeg)
  return jpeg, height, width, notes


def verify_jpeg(jpeg):
  """(height, width) of `jpeg` as the training reader sees it; SkipImage when its ops cannot decode it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    height, width, _ = (int(v) for v in tf.image.extract_jpeg_shape(jpeg).numpy())
    decoded = tf.io.decode_jpeg(jpeg, channels=3)
  except Exception as e:  # pylint: disable=broad-except
    raise SkipImage(f"the re-encoded image does not decode: {_first_line(e)}") from None
  if tuple(decoded.shape) != (height, width, 3):
    raise SkipImage(f"the re-encoded image decodes to {tuple(decoded.shape)}, not ({height}, {width}, 3)")
  return height, width
