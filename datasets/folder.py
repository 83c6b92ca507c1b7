r"""Your own photos: any directory of class sub-folders.

    python download_and_convert_data.py --dataset_name=folder --source=~/my_photos --dataset_dir=/tmp/my_photos \
        --validation_size=0.1 --test_size=0.1

Classes are the sorted sub-folder names; every file below a class folder (sub-folders
included) is an example; files that are not images are skipped and listed in
dataset.json. Split like `flowers`: shuffle with `--seed`, then validation, test, train.
"""
from datasets import dataset_utils

NAME = "folder"
FILES = ()
CLASS_NAMES = None  # whatever the source has
OPTIONS = {"validation_size": 0.1, "test_size": 0, "seed": 0}
CONVERT_FLAGS = "--source=YOUR_PHOTOS_DIR"  # what a conversion command needs besides the name and the directory


def prepare(dataset_dir, source, options, pool):
  del dataset_dir, pool
  if not source:
    raise dataset_utils.ConversionError("--dataset_name=folder needs --source=DIR, a directory with one sub-folder "
                                        "of images per class.")
  class_names, splits = dataset_utils.split_folder(source, options)
  return class_names, splits, {"source/": {"path": source, "tree_sha256": "computed"}}
