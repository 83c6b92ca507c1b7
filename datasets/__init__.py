"""Flower datasets as TF-Slim TFRecord shards: one small declarative module per dataset.

    import datasets
    datasets.convert("synthetic_flowers", "/tmp/synthetic_flowers")
    split = datasets.get_split("synthetic_flowers", "train", "/tmp/synthetic_flowers")
    print(split.num_samples, split.num_classes, split.file_pattern)

A dataset module says NAME, FILES (upstream URLs + checksums), CLASS_NAMES, OPTIONS (its
conversion options with defaults) and `prepare(dataset_dir, source, options, pool)` ->
(class names, {split: [(path, label)]}, source checksums). Conversion itself, and the
sizes readers see (from `dataset_dir/dataset.json`), are shared in dataset_utils.
"""
import os

from absl import logging

from datasets import dataset_utils
from datasets import flowers
from datasets import flowers17
from datasets import flowers102
from datasets import folder
from datasets import synthetic_flowers
from datasets.dataset_utils import ConversionError, DatasetSplit  # pylint: disable=unused-import

_DATASETS = {m.NAME: m for m in (flowers, flowers17, flowers102, folder, synthetic_flowers)}
# Options every dataset accepts (the others are per dataset, in its OPTIONS).
COMMON_OPTIONS = ("source", "num_shards", "num_workers", "overwrite")


def list_datasets():
  return sorted(_DATASETS)


def get_module(name):
  if name not in _DATASETS:
    raise ValueError(f"Unknown dataset {name!r}. Known datasets: {', '.join(list_datasets())}.")
  return _DATASETS[name]


def resolve_options(name, **options):
  """Dataset defaults overridden by the options that are set; an option the dataset lacks is an error."""
  module = get_module(name)
  given = {k: v for k, v in options.items() if v is not None}
  unknown = sorted(set(given) - set(module.OPTIONS))
  if unknown:
    allowed = ", ".join(f"--{k}" for k in module.OPTIONS) or "none"
    raise ValueError(f"{', '.join('--' + k for k in unknown)} does not apply to --dataset_name={name} "
                     f"(its options: {allowed}). Drop it.")
  return {**module.OPTIONS, **given}


def convert(name, dataset_dir, *, source=None, num_shards=None, num_workers=None, overwrite=False, **options):
  """Converts dataset `name` into `dataset_dir`; a no-op when already done with the same options.

  Returns the dataset.json content.
  """
  module = get_module(name)
  resolved = resolve_options(name, **options)
  recorded = {**resolved, "num_shards": num_shards}
  dataset_dir = os.path.abspath(os.path.expanduser(dataset_dir))
  source = os.path.abspath(os.path.expanduser(source)) if source else None
  if not overwrite and dataset_utils.is_converted(dataset_dir, name, recorded):
    logging.info("%s already holds a complete conversion of %s: nothing to do (pass --overwrite to redo it).",
                 dataset_dir, name)
    return dataset_utils.read_metadata(dataset_dir)
  with dataset_utils.WorkerPool(num_workers) as pool:
    class_names, splits, sources = module.prepare(dataset_dir, source, resolved, pool)
    return dataset_utils.convert_examples(name, dataset_dir, class_names, splits, sources=sources, options=recorded,
                                          num_shards=num_shards, pool=pool)


def get_split(name, split_name, dataset_dir):
  """Describes one converted split (sizes from dataset.json); errors say what exists and what to run."""
  get_module(name)
  command = dataset_utils.convert_command(name, dataset_dir)
  if not os.path.isdir(dataset_dir):
    raise FileNotFoundError(f"Dataset directory {dataset_dir} does not exist. Create it with:\n  {command}")
  meta = dataset_utils.read_metadata(dataset_dir)
  if meta is None:
    raise FileNotFoundError(
        f"{dataset_dir}: conversion incomplete, re-run download_and_convert_data.py (no valid "
        f"{dataset_utils.DATASET_JSON} yet; it is written last):\n  {command} --overwrite")
  if meta["name"] != name:
    raise ValueError(f"{dataset_dir} holds dataset {meta['name']!r}, not {name!r}. Pass --dataset_name={meta['name']} "
                     f"or convert {name} into another directory:\n  {command}")
  if split_name not in meta["splits"]:
    raise ValueError(f"Split {split_name!r} is not in {dataset_dir} (splits: {', '.join(sorted(meta['splits']))}). "
                     "Use one of those, or re-convert with --validation_size/--test_size to create it.")
  info = meta["splits"][split_name]
  filenames = sorted(os.path.join(dataset_dir, f) for f in info["files"])
  missing = [f for f in filenames if not os.path.isfile(f)]
  if missing:
    raise FileNotFoundError(f"{dataset_dir}: conversion incomplete, re-run download_and_convert_data.py "
                            f"({len(missing)} shard(s) missing, e.g. {missing[0]}):\n  {command} --overwrite")
  return DatasetSplit(
      name=name, split_name=split_name, dataset_dir=dataset_dir, num_samples=int(info["num_samples"]),
      num_classes=int(meta["num_classes"]), labels_to_names=dict(enumerate(meta["class_names"])),
      file_pattern=os.path.join(dataset_dir, f"{name}_{split_name}_*-of-*.tfrecord"), filenames=filenames)
