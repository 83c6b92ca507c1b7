"""A corpus of bad and awkward inputs for the converter, generated on the fly (no binary fixtures in the repo).

    from tests import bad_inputs
    corpus = bad_inputs.write_corpus("/tmp/photos")     # class folders alpha/ and beta/
    for entry in corpus: print(entry.record_name, entry.outcome, entry.reason or entry.size)
    bad_inputs.write_photos("/tmp/good", num_classes=3, per_class=6)   # good photos, for everything else

Every file a user's photo folder can hold that once broke a converter somewhere: decompression
("header") bombs, a really big photo, empty and truncated files, text named .jpg, CMYK JPEG,
16-bit PNG, animated GIF, BMP, WebP, a phone photo stored sideways (EXIF orientation 6), file
names that are not UTF-8 or hold a newline, a FIFO and a dangling symbolic link.

Each Entry says what the converter must do with it: skip it (and the reason it records), or
convert it (and what the stored image must look like: its size, and an `expected` RGB array
to compare the decoded record with, built independently of the code under test).
"""
import dataclasses
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image
from PIL import ImageOps

CLASSES = ("alpha", "beta")
HUGE_SIDE = 9000  # a real (not forged) 9000 x 9000 photo: 81 Mpx, above the default --max_image_side


@dataclasses.dataclass
class Entry:
  """One corpus file and what the converter must make of it."""
  rel: bytes                  # path below the corpus root, as bytes (some names are not valid UTF-8)
  data: object                # the file's bytes, or a callable(path) that makes it (FIFO, symlink, big photo)
  label: int
  record_name: str            # the safe name in dataset.json ("beta/caf\\xe9.jpg") and, base name, in the record
  outcome: str                # "skip" or "convert"
  reason: str = None          # skip: a regex the recorded reason must match
  size: tuple = None          # convert: (height, width) of the stored image
  expected: object = None     # convert: the RGB pixels the record must decode to (approximately), or a callable
  tolerance: float = 12.0     # mean absolute error allowed against `expected` (JPEG re-encoding)
  changed: str = None         # convert: a regex a "changed" note for this file must match (None: no note)
  kept_bytes: bool = False    # convert: the record must hold the source bytes unchanged
  path: bytes = None          # absolute path, once written (write_corpus)

  @property
  def base_name(self):
    return self.record_name.rsplit("/", 1)[-1]

  def expected_pixels(self):
    return self.expected() if callable(self.expected) else self.expected


# ----------------------------------------------------------------------------------------------------------------------
# Pixels and encoders


def quadrants(height, width, colors=((220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 230, 40))):
  """An RGB image of four flat coloured quadrants: orientation and colour errors are easy to see, JPEG keeps it."""
  image = np.zeros((height, width, 3), np.uint8)
  h, w = height // 2, width // 2
  image[:h, :w], image[:h, w:], image[h:, :w], image[h:, w:] = colors
  return image


def encode(image, fmt, **kwargs):
  buf = io.BytesIO()
  (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, fmt, **kwargs)
  return buf.getvalue()


def _png_chunk(kind, data):
  return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(array, bit_depth=8, header_size=None):
  """A PNG written by hand: RGB (color type 2) at 8 or 16 bits; `header_size` (w, h) forges the IHDR."""
  height, width = array.shape[:2]
  dtype = ">u2" if bit_depth == 16 else np.uint8
  rows = b"".join(b"\x00" + np.ascontiguousarray(row, dtype=dtype).tobytes() for row in array)
  w, h = header_size or (width, height)
  ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, 2, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(rows))
          + _png_chunk(b"IEND", b""))


def png_bomb(width=23_000, height=23_000):
  """A real (not forged) grayscale PNG of width x height black pixels: 514 KB at 23000 x 23000, which decodes to
  529 MB (1.6 GB as RGB). Compressed row by row, so making it never holds the pixels."""
  compressor = zlib.compressobj(9)
  row = b"\x00" * (width + 1)  # filter byte 0, then the row
  data = b"".join([compressor.compress(row) for _ in range(height)] + [compressor.flush()])
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
  return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def png_header_bomb(width=100_000, height=100_000):
  """A 100-byte PNG whose IHDR claims width x height (10 Gpx): decoding it would take 30 GB."""
  return png(np.zeros((1, 1, 3), np.uint8), header_size=(width, height))


def jpeg_header_bomb(width=65_000, height=65_000):
  """A tiny real JPEG whose SOF0 header is patched to claim width x height (4.2 Gpx at 65000 x 65000)."""
  data = bytearray(encode(quadrants(16, 16), "JPEG", quality=90))
  sof = data.find(b"\xff\xc0")
  assert sof > 0, "no baseline SOF0 marker"
  data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
  return bytes(data)


def exif_jpeg(image, orientation):
  """A JPEG of `image` as stored, with EXIF orientation `orientation` (6: display rotated 90 degrees clockwise)."""
  exif = Image.Exif()
  exif[0x0112] = orientation
  return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def displayed(data):
  """What an EXIF-aware viewer shows (Pillow's exif_transpose: a reference independent of the converter)."""
  return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


def animated_gif(frames):
  images = [Image.fromarray(f) for f in frames]
  buf = io.BytesIO()
  images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
  return buf.getvalue()


def area_downsize(image, size):
  """Reference resize (Pillow's box filter, i.e. area averaging) to (height, width)."""
  return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BOX))


def write_photos(root, *, num_classes=3, per_class=6, size=32, seed=0):
  """Good photos: root/class_k/img_i.jpg, each class a distinct colour with noise (cifarnet learns it in a few
  steps). Returns root."""
  colours = [(220, 40, 40), (40, 200, 40), (40, 60, 220), (230, 220, 40), (200, 40, 200), (40, 210, 210)]
  rng = np.random.RandomState(seed)
  for c in range(num_classes):
    folder = os.path.join(root, f"class_{c}")
    os.makedirs(folder, exist_ok=True)
    for i in range(per_class):
      image = np.clip(np.array(colours[c % len(colours)], np.float32) + rng.normal(0, 40, (size, size, 3)), 0, 255)
      with open(os.path.join(folder, f"img_{i:03d}.jpg"), "wb") as f:
        f.write(encode(image.astype(np.uint8), "JPEG", quality=90))
  return root


# ----------------------------------------------------------------------------------------------------------------------
# The corpus


def _huge_gray_jpeg(path):
  """A real 9000 x 9000 grayscale photo (left half black, right half white); made only when written (81 MB raw)."""
  gray = np.zeros((HUGE_SIDE, HUGE_SIDE), np.uint8)
  gray[:, HUGE_SIDE // 2:] = 255
  with open(path, "wb") as f:
    f.write(encode(gray, "JPEG", quality=90))


def _huge_downsized():
  half = np.zeros((4096, 4096, 3), np.uint8)
  half[:, 2048:] = 255
  return half


def entries():
  """[Entry] of the corpus, files not written yet (cheap: the big photo is made by write_corpus)."""
  out = []

  def add(cls, name, data, **expect):
    """name: str, or bytes for names that are not valid UTF-8; data: bytes, or a callable(path) making the file."""
    safe = os.fsencode(name).decode("utf-8", "backslashreplace").replace("\n", "\\n")
    out.append(Entry(rel=os.path.join(cls.encode(), os.fsencode(name)), data=data, label=CLASSES.index(cls),
                     record_name=f"{cls}/{safe}", **expect))

  good = quadrants(40, 56)
  full = encode(good, "JPEG", quality=90)
  cannot_decode = r"^cannot decode: "
  # -- skipped: bombs, not images, not regular files
  add("alpha", "bomb.png", png_header_bomb(), outcome="skip", reason=r"^too large to decode safely: 100000x100000 ")
  add("alpha", "bomb.jpg", jpeg_header_bomb(), outcome="skip", reason=r"^(cannot decode|corrupt|truncated)")
  add("alpha", "empty.jpg", b"", outcome="skip", reason=r"^empty file$")
  add("alpha", "text.jpg", b"these are my holiday notes, not a photo\n", outcome="skip",
      reason=r"^not a JPEG, PNG, GIF, BMP or WebP image$")
  add("alpha", "truncated.jpg", full[:len(full) // 2], outcome="skip", reason=cannot_decode)
  add("alpha", "fifo.jpg", os.mkfifo, outcome="skip", reason=r"^not a regular file \(a FIFO")
  add("alpha", "dangling.jpg", lambda p: os.symlink(b"no-such-photo.jpg", p), outcome="skip",
      reason=r"^broken symbolic link$")
  add("alpha", b"caf\xe9 notes.jpg", b"not an image either", outcome="skip",
      reason=r"^not a JPEG, PNG, GIF, BMP or WebP image$")
  # -- converted
  add("alpha", "rgb.jpg", full, outcome="convert", size=(40, 56), expected=good, kept_bytes=True)
  add("alpha", "cmyk.jpg", encode(Image.fromarray(good).convert("CMYK"), "JPEG", quality=95), outcome="convert",
      size=(40, 56), expected=good)
  deep = np.zeros((24, 32, 3), np.uint16)
  deep[..., 0] = np.linspace(0, 65535, 32).astype(np.uint16)[None, :]
  deep[..., 1] = 40000
  deep[..., 2] = np.linspace(65535, 0, 24).astype(np.uint16)[:, None]
  add("beta", "deep.png", png(deep, bit_depth=16), outcome="convert", size=(24, 32),
      expected=np.round(deep / 257.0).astype(np.uint8))
  red, green = np.full((30, 20, 3), (230, 20, 20), np.uint8), np.full((30, 20, 3), (20, 230, 20), np.uint8)
  add("beta", "anim.gif", animated_gif([red, green, green]), outcome="convert", size=(30, 20), expected=red)
  add("beta", "bitmap.bmp", encode(good, "BMP"), outcome="convert", size=(40, 56), expected=good, tolerance=6)
  add("beta", "picture.webp", encode(good, "WEBP", lossless=True), outcome="convert", size=(40, 56), expected=good,
      tolerance=6)
  stored = quadrants(40, 64)  # stored 40 high x 64 wide; displayed (orientation 6) 64 high x 40 wide
  sideways = exif_jpeg(stored, 6)
  add("beta", "sideways.jpg", sideways, outcome="convert", size=(64, 40), expected=displayed(sideways),
      changed=r"^EXIF orientation 6 applied$")
  add("beta", b"caf\xe9.jpg", sideways, outcome="convert", size=(64, 40), expected=displayed(sideways),
      changed=r"^EXIF orientation 6 applied$")
  add("beta", "new\nline.jpg", full, outcome="convert", size=(40, 56), expected=good, kept_bytes=True)
  add("beta", "huge.jpg", _huge_gray_jpeg, outcome="convert", size=(4096, 4096), expected=_huge_downsized, tolerance=3,
      changed=rf"^downsized from {HUGE_SIDE}x{HUGE_SIDE} \(--max_image_side=4096\)$")
  return out


def write_corpus(root, corpus=None):
  """Writes `corpus` (default: entries()) into root/{alpha,beta}/, setting each Entry's path; returns it."""
  root = os.fsencode(os.path.abspath(root))
  corpus = entries() if corpus is None else corpus
  for entry in corpus:
    entry.path = os.path.join(root, entry.rel)
    os.makedirs(os.path.dirname(entry.path), exist_ok=True)
    if callable(entry.data):
      entry.data(entry.path)
    else:
      with open(entry.path, "wb") as f:
        f.write(entry.data)
  return corpus
