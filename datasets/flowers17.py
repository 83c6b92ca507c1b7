"""Oxford 17 Flowers: 1,360 images, 17 classes x 80, three official splits.

    python download_and_convert_data.py --dataset_name=flowers17 --dataset_dir=/tmp/flowers17 --split_index=1

Upstream (https://www.robots.ox.ac.uk/~vgg/data/flowers/17/): `17flowers.tgz` holds
`jpg/image_0001.jpg` ... `jpg/image_1360.jpg`, 80 consecutive images per class, so
label = (id - 1) // 80; `datasplits.mat` holds `trn1..3`, `val1..3`, `tst1..3` (1-based
image ids; 40/20/20 per class -> 680/340/340). Facts and sources: SOURCES.md §2.
"""
import os

from datasets import dataset_utils
from slimflowers.core import errors

NAME = "flowers17"
_BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/"
# md5 checksums: SOURCES.md §2 (sizes unpublished, so only the checksum is checked).
FILES = (
    dataset_utils.RemoteFile("17flowers.tgz", _BASE_URL + "17flowers.tgz", md5="b59a65d8d1a99cd66944d474e1289eab"),
    dataset_utils.RemoteFile("datasplits.mat", _BASE_URL + "datasplits.mat", md5="4828cddfd0d803c5abbdebcb1e148a1e"),
)
# Class order: a third-party list (SOURCES.md §2: not confirmed upstream); the label arithmetic does not depend on it.
CLASS_NAMES = ("daffodil", "snowdrop", "lily valley", "bluebell", "crocus", "iris", "tigerlily", "tulip",
               "fritillary", "sunflower", "daisy", "colts' foot", "dandelion", "cowslip", "buttercup", "windflower",
               "pansy")
IMAGES_PER_CLASS = 80
OPTIONS = {"split_index": 1}
_SPLIT_KEYS = {"train": "trn", "validation": "val", "test": "tst"}


def prepare(dataset_dir, source, options, pool):
  del pool
  index = options["split_index"]
  if index not in (1, 2, 3):
    raise errors.BadValue(f"--split_index={index}: Oxford 17 has splits 1, 2 and 3.")
  root, sources = dataset_utils.fetch_and_extract(FILES[0], dataset_dir, source, "jpg")
  mat_path, info = dataset_utils.fetch(FILES[1], dataset_dir, source)
  sources[FILES[1].filename] = info
  splits = {}
  for split, key in _SPLIT_KEYS.items():
    ids = dataset_utils.load_mat_ids(mat_path, f"{key}{index}")
    bad = [i for i in ids if not 1 <= i <= IMAGES_PER_CLASS * len(CLASS_NAMES)]
    if bad:
      raise dataset_utils.ConversionError(f"{mat_path}: '{key}{index}' has image ids out of 1..1360: {bad[:5]}.")
    splits[split] = [(os.path.join(root, f"image_{i:04d}.jpg"), (i - 1) // IMAGES_PER_CLASS) for i in ids]
  return list(CLASS_NAMES), splits, sources
