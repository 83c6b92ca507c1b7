"""Flower datasets as TF-Slim TFRecord shards: one small declarative module per dataset.

    import datasets
    datasets.convert("synthetic_flowers", "/tmp/synthetic_flowers")
    split = datasets.get_split("synthetic_flowers", "train", "/tmp/synthetic_flowers")
    print(split.num_samples, split.num_classes, split.filenames[:1])

A dataset module says NAME, FILES (upstream URLs + checksums), CLASS_NAMES, OPTIONS (its
conversion options with defaults) and `prepare(dataset_dir, source, options, pool)` ->
(class names, {split: [(path, label)]}, source checksums), with the helpers of
dataset_utils. Conversion itself is datasets/conversion.py (images: datasets/images.py);
what readers see (sizes from `dataset_dir/dataset.json`, the record schema) is
datasets/records.py.
"""
import contextlib
import os

from absl import logging

from datasets import conversion
from datasets import dataset_utils
from datasets import flowers
from datasets import flowers17
from datasets import flowers102
from datasets import folder
from datasets import images
from datasets import records
from datasets import synthetic_flowers
from datasets.dataset_utils import ConversionError  # pylint: disable=unused-import
from datasets.records import DatasetSplit  # pylint: disable=unused-import
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import locks

_DATASETS = {m.NAME: m for m in (flowers, flowers17, flowers102, folder, synthetic_flowers)}
# Options every dataset accepts, recorded in dataset.json because they change what is written.
COMMON_OPTIONS = {"max_image_side": images.DEFAULT_MAX_IMAGE_SIDE, "resize_to": None}


def list_datasets():
  return sorted(_DATASETS)


def get_module(name):
  if name not in _DATASETS:
    raise errors.BadValue(f"Unknown dataset {name!r}. Known datasets: {', '.join(list_datasets())}.")
  return _DATASETS[name]


def resolve_options(name, **options):
  """Dataset defaults overridden by the options that are set; an option the dataset lacks is an error."""
  module = get_module(name)
  given = {k: v for k, v in options.items() if v is not None}
  unknown = sorted(set(given) - set(module.OPTIONS))
  if unknown:
    allowed = ", ".join(f"--{k}" for k in module.OPTIONS) or "none"
    raise errors.BadValue(f"{', '.join('--' + k for k in unknown)} does not apply to --dataset_name={name} "
                          f"(its options: {allowed}). Drop it.")
  return {**module.OPTIONS, **given}


def _check_common(max_image_side, resize_to):
  if max_image_side < images.MIN_MAX_IMAGE_SIDE:
    raise errors.BadValue(f"--max_image_side={max_image_side} must be >= {images.MIN_MAX_IMAGE_SIDE} px.")
  if resize_to is not None and resize_to < 1:
    raise errors.BadValue(f"--resize_to={resize_to} must be >= 1 px (the shorter side of the stored images), or "
                          "unset to keep the sizes.")


def convert(name, dataset_dir, *, source=None, num_shards=None, num_workers=None, overwrite=False,
            max_image_side=None, resize_to=None, **options):
  """Converts dataset `name` into `dataset_dir`; a no-op when already done with the same options.

  Returns the dataset.json content. Holds the directory's lock throughout: a second
  converter on the same directory is refused (errors.Busy).
  """
  module = get_module(name)
  resolved = resolve_options(name, **options)
  max_image_side = max_image_side or COMMON_OPTIONS["max_image_side"]
  _check_common(max_image_side, resize_to)
  if num_shards is not None and num_shards < 1:
    raise errors.BadValue(f"--num_shards={num_shards} must be >= 1 (or unset: one per "
                          f"{conversion.IMAGES_PER_SHARD} images).")
  recorded = {**resolved, "num_shards": num_shards}
  if max_image_side != COMMON_OPTIONS["max_image_side"]:
    recorded["max_image_side"] = max_image_side
  if resize_to:
    recorded["resize_to"] = resize_to
  dataset_dir = fileio.abspath(dataset_dir)
  source = fileio.abspath(source) if source else None
  fileio.check_directory_flag("dataset_dir", dataset_dir)
  if name == "folder" and source and fileio.is_local(source) and fileio.is_local(dataset_dir) and \
      os.path.commonpath([fileio.local_path(source), fileio.local_path(dataset_dir)]) == fileio.local_path(source):
    # Your photo folder is only read: shards written into it would also become one more "class".
    raise errors.BadValue(f"--dataset_dir={dataset_dir} is inside --source={source}: the conversion would write "
                          "into your photo folder, which is only ever read. Pass a --dataset_dir outside it.")
  with locks.DirLock(dataset_dir, "download_and_convert_data.py"):
    conversion.clean_up(dataset_dir)
    done = conversion.check_dataset_dir(dataset_dir, name, recorded, overwrite=overwrite)
    if done is not None:
      logging.info("%s already holds a complete conversion of %s: nothing to do (pass --overwrite to redo it).",
                   dataset_dir, name)
      return done
    with conversion.WorkerPool(num_workers) as pool:
      class_names, splits, sources = module.prepare(dataset_dir, source, resolved, pool)
      return conversion.convert_examples(name, dataset_dir, class_names, splits, sources=sources, options=recorded,
                                         num_shards=num_shards, pool=pool, max_image_side=max_image_side,
                                         resize_to=resize_to)


def convert_command(name, dataset_dir):
  """The download_and_convert_data.py command that converts dataset `name` into `dataset_dir` (with the flags the
  dataset needs, e.g. folder's --source), for error messages."""
  return records.convert_command(name, dataset_dir, getattr(get_module(name), "CONVERT_FLAGS", ""))


def get_split(name, split_name, dataset_dir):
  """Describes one converted split (sizes from dataset.json); errors say what exists and what to run."""
  command = convert_command(name, dataset_dir)
  if not fileio.isdir(dataset_dir):
    if fileio.exists(dataset_dir):
      raise errors.BadValue(f"--dataset_dir={dataset_dir} is a file, not the directory written by "
                            f"download_and_convert_data.py. Create one with:\n  {command}")
    raise errors.NotFound(f"Dataset directory {dataset_dir} does not exist. Create it with:\n  {command}")
  meta = records.read_metadata(dataset_dir)
  if meta is None:
    raise errors.NotFound(
        f"{dataset_dir}: conversion incomplete, re-run download_and_convert_data.py (no valid "
        f"{records.DATASET_JSON} yet; it is written last):\n  {command} --overwrite")
  if meta["name"] != name:
    raise errors.BadValue(f"{dataset_dir} holds dataset {meta['name']!r}, not {name!r}. Pass "
                          f"--dataset_name={meta['name']} or convert {name} into another directory:\n  {command}")
  if split_name not in meta["splits"]:
    raise errors.BadValue(f"Split {split_name!r} is not in {dataset_dir} (splits: "
                          f"{', '.join(sorted(meta['splits']))}). Use one of those, or re-convert with "
                          "--validation_size/--test_size to create it.")
  info = meta["splits"][split_name]
  filenames = sorted(os.path.join(dataset_dir, f) for f in info["files"])
  missing = [f for f in filenames if not fileio.exists(f)]
  if missing:
    raise errors.NotFound(f"{dataset_dir}: conversion incomplete, re-run download_and_convert_data.py "
                          f"({len(missing)} shard(s) missing, e.g. {missing[0]}):\n  {command} --overwrite")
  return DatasetSplit(
      name=name, split_name=split_name, dataset_dir=dataset_dir, num_samples=int(info["num_samples"]),
      num_classes=int(meta["num_classes"]), labels_to_names=dict(enumerate(meta["class_names"])),
      filenames=filenames)


def conversion_options(dataset_dir):
  """The options the dataset was converted with (dataset.json), e.g. {"resize_to": 96, ...}; {} if unknown."""
  return (records.read_metadata(dataset_dir) or {}).get("options") or {}


def image_sizes(dataset_dir, split_name=None):
  """The converter's size summary ({"height"|"width": {"min", "median", "max"}}) of a split or all; None if absent."""
  meta = records.read_metadata(dataset_dir) or {}
  if split_name is not None:
    return (meta.get("splits", {}).get(split_name) or {}).get("image_sizes")
  return meta.get("image_sizes")


def verify(name, dataset_dir):
  """--verify: reads every record of every shard of a converted dataset. Returns {split: records read}.

  Raises records.CorruptedShards naming each bad shard (missing, another size or checksum than written,
  a record that does not read, a count that differs from dataset.json) and the command that fixes it.
  """
  get_module(name)
  meta = records.read_metadata(dataset_dir) if fileio.isdir(dataset_dir) else None
  if meta is None or meta.get("name") != name:
    get_split(name, "train", dataset_dir)  # the usual error: no such directory, incomplete, another dataset
  problems = records.shard_problems(dataset_dir, meta, read_records=True)
  if problems:
    raise records.CorruptedShards(records.describe_problems(dataset_dir, meta, problems))
  return {split: int(info["num_samples"]) for split, info in sorted(meta["splits"].items())}


@contextlib.contextmanager
def shard_errors_named(dataset_dir):
  """Turns TensorFlow's DataLossError from reading `dataset_dir`'s shards (a byte offset, no file name) into
  records.CorruptedShards: one line naming the bad shard(s), their split and the command that converts again.

  The shards are checked once, when the error happens; an error no shard explains is re-raised as it was.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    yield
  except tf.errors.DataLossError as e:
    meta = records.read_metadata(dataset_dir) if dataset_dir and fileio.isdir(dataset_dir) else None
    problems = records.shard_problems(dataset_dir, meta, read_records=True) if meta else []
    if not problems:
      raise
    raise records.CorruptedShards(records.describe_problems(dataset_dir, meta, problems)) from e
