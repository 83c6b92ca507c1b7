"""What a converted dataset directory holds, and how it is read: the record schema, dataset.json, labels.txt.

    from datasets import records
    meta = records.read_metadata("data/flowers102")        # dataset.json, or None while incomplete
    features = records.parse_example(serialized)           # {"image/encoded": ..., "image/class/label": ...}

One home for the TFRecord schema: TF-Slim's Example keys (research/slim/datasets/
dataset_utils.py image_to_tfexample) plus `image/filename`, written by `make_example`
(the converter) and read by `parse_example` (the input pipeline, tests, tools).
"""
import dataclasses
import os

from slimflowers import fileio

FORMAT_VERSION = 1
DATASET_JSON = "dataset.json"
LABELS_FILENAME = "labels.txt"

# key -> (kind, default when absent); "bytes" features are scalar strings, "int" int64.
SCHEMA = {
    "image/encoded": ("bytes", None),
    "image/format": ("bytes", "jpg"),
    "image/class/label": ("int", None),
    "image/height": ("int", 0),
    "image/width": ("int", 0),
    "image/filename": ("bytes", ""),  # the source file's base name, so every record can be traced back
}


@dataclasses.dataclass(frozen=True)
class DatasetSplit:
  """What a reader needs about one converted split (sizes come from dataset.json)."""
  name: str
  split_name: str
  dataset_dir: str
  num_samples: int
  num_classes: int
  labels_to_names: dict
  filenames: list


def shard_filename(name, split, index, num_shards):
  """TF-Slim's shard naming: {name}_{split}_{i:05d}-of-{n:05d}.tfrecord."""
  return f"{name}_{split}_{index:05d}-of-{num_shards:05d}.tfrecord"


def convert_command(name, dataset_dir, extra=""):
  return (f"python download_and_convert_data.py --dataset_name={name} --dataset_dir={dataset_dir}"
          + (" " + extra if extra else ""))


def make_example(jpeg_bytes, label, height, width, filename):
  """One record in the SCHEMA (`filename`: str, the source file's base name)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def feature(key, value):
    if SCHEMA[key][0] == "int":
      return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  values = {"image/encoded": jpeg_bytes, "image/format": b"jpg", "image/class/label": label,
            "image/height": height, "image/width": width, "image/filename": filename.encode("utf-8")}
  return tf.train.Example(features=tf.train.Features(feature={k: feature(k, values[k]) for k in SCHEMA}))


def parse_example(serialized, keys=None):
  """Parses one serialized record into {key: tensor} (`keys`: a subset of SCHEMA; the label comes as int32)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = {}
  for key in keys or SCHEMA:
    kind, default = SCHEMA[key]
    dtype = tf.int64 if kind == "int" else tf.string
    spec[key] = tf.io.FixedLenFeature([], dtype, default_value=default)
  features = tf.io.parse_single_example(serialized, spec)
  if "image/class/label" in features:
    features["image/class/label"] = tf.cast(features["image/class/label"], tf.int32)
  return features


def read_metadata(dataset_dir):
  """Returns the parsed dataset.json, or None when absent or unreadable (an incomplete conversion)."""
  meta = fileio.read_json(os.path.join(dataset_dir, DATASET_JSON))
  if meta.get("format_version") != FORMAT_VERSION or "splits" not in meta:
    return None
  return meta


def read_labels(dataset_dir):
  """{label: class name} from labels.txt (`id:name` per line)."""
  labels = {}
  for line in fileio.read_text(os.path.join(dataset_dir, LABELS_FILENAME)).splitlines():
    if line.strip():
      i, name = line.split(":", 1)
      labels[int(i)] = name
  return labels
