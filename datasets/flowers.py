"""TF flower_photos: 3,670 photos of 5 flower classes, no upstream split.

    python download_and_convert_data.py --dataset_name=flowers --dataset_dir=/tmp/flowers

Labels are the sorted class-folder names (daisy=0 ... tulips=4, as TF-Slim; TFDS uses
another order). Split as TF-Slim's download_and_convert_flowers.py: shuffle with seed 0,
the first 350 -> validation, the rest -> train; `--test_size` carves out a test split
after the validation images.
"""
from datasets import dataset_utils

NAME = "flowers"
# Size and sha256: REFERENCE.md section 2 (TFDS tf_flowers checksums).
FILES = (dataset_utils.RemoteFile(
    "flower_photos.tgz", "http://download.tensorflow.org/example_images/flower_photos.tgz",
    size=228_813_984, sha256="4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"),)
ROOT = "flower_photos"
CLASS_NAMES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
OPTIONS = {"validation_size": 350, "test_size": 0, "seed": 0}


def split_folder(root, options, expected_classes=None):
  """Class folders under `root` -> (class names, {split: [(path, label)]}) by TF-Slim's shuffled split."""
  class_names, examples = dataset_utils.list_class_folders(root)
  if expected_classes and tuple(class_names) != tuple(expected_classes):
    raise dataset_utils.ConversionError(
        f"{root} has class folders {class_names}, expected {list(expected_classes)}. Point --source at an "
        "unmodified flower_photos directory, or use --dataset_name=folder for your own classes.")
  splits = dataset_utils.random_split(examples, options["validation_size"], options["test_size"], options["seed"])
  return class_names, splits


def prepare(dataset_dir, source, options, pool):
  del pool
  root, sources = dataset_utils.fetch_and_extract(FILES[0], dataset_dir, source, ROOT)
  class_names, splits = split_folder(root, options, CLASS_NAMES)
  return class_names, splits, sources
