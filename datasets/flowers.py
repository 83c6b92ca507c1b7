"""TF flower_photos: 3,670 photos of 5 flower classes, no upstream split.

    python download_and_convert_data.py --dataset_name=flowers --dataset_dir=/tmp/flowers

Labels are the sorted class-folder names (daisy=0 ... tulips=4, as TF-Slim; TFDS uses
another order). Split as TF-Slim's download_and_convert_flowers.py: shuffle with seed 0,
the first 350 -> validation, the rest -> train; `--test_size` carves out a test split
after the validation images.
"""
from datasets import dataset_utils

NAME = "flowers"
# Size and sha256: SOURCES.md §2 (TFDS tf_flowers checksums).
FILES = (dataset_utils.RemoteFile(
    "flower_photos.tgz", "http://download.tensorflow.org/example_images/flower_photos.tgz",
    size=228_813_984, sha256="4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"),)
ROOT = "flower_photos"
CLASS_NAMES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
OPTIONS = {"validation_size": 350, "test_size": 0, "seed": 0}


def prepare(dataset_dir, source, options, pool):
  del pool
  root, sources = dataset_utils.fetch_and_extract(FILES[0], dataset_dir, source, ROOT)
  class_names, splits = dataset_utils.split_folder(root, options, CLASS_NAMES)
  return class_names, splits, sources
