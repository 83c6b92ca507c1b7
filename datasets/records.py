"""What a converted dataset directory holds, and how it is read: the record schema, dataset.json, labels.txt.

    from datasets import records
    meta = records.read_metadata("data/flowers102")        # dataset.json, or None while incomplete
    features = records.parse_example(serialized)           # {"image/encoded": ..., "image/class/label": ...}

One home for the TFRecord schema: TF-Slim's Example keys (research/slim/datasets/
dataset_utils.py image_to_tfexample) plus `image/filename`, written by `make_example`
(the converter) and read by `parse_example` (the input pipeline, tests, tools).
"""
import dataclasses
import hashlib
import os

from slimflowers.core import errors
from slimflowers.core import fileio

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


def write_labels(directory, class_names):
  """labels.txt (`id:name` per line) into `directory`: the dataset's, and the export's copy of it."""
  fileio.write_text_atomic(os.path.join(directory, LABELS_FILENAME),
                           "".join(f"{i}:{name}\n" for i, name in enumerate(class_names)))


def read_labels(dataset_dir):
  """{label: class name} from labels.txt (`id:name` per line)."""
  labels = {}
  for line in fileio.read_text(os.path.join(dataset_dir, LABELS_FILENAME)).splitlines():
    if line.strip():
      i, name = line.split(":", 1)
      labels[int(i)] = name
  return labels


# ----------------------------------------------------------------------------------------------------------------------
# Checking the shards: a truncated or overwritten file is named, with the fix


class CorruptedShards(errors.UserError, IOError):
  """A shard of a converted dataset is missing, truncated or corrupted; the message names it and the fix."""


def file_sha256(path):
  """The sha256 of a local file, read in blocks."""
  h = hashlib.sha256()
  with open(fileio.local_path(path), "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _count_records(path):
  """Records in one TFRecord file; every record's length and CRC32C are checked as it is read."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  return int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))


def _first_line(error):
  message = getattr(error, "message", None) or str(error)
  return " ".join(message.split("}} ")[-1].split())[:200]


def shard_problems(dataset_dir, meta, *, read_records=False):
  """[(split, file name, problem)] for the shards dataset.json lists; [] when all are as written.

  Checks that each exists with the size and sha256 dataset.json recorded when it was written (checksums
  on local files only; older dataset.json files recorded neither). `read_records` also reads every
  record (TFRecord length and CRC checks) and compares each split's count with dataset.json.
  """
  problems = []
  for split, info in sorted(meta.get("splits", {}).items()):
    sizes, digests = info.get("file_bytes") or {}, info.get("file_sha256") or {}
    count, readable = 0, True
    for name in info.get("files", []):
      path = os.path.join(dataset_dir, name)
      if not fileio.exists(path):
        problems.append((split, name, "is missing"))
        readable = False
        continue
      size = fileio.size(path)
      if name in sizes and size != sizes[name]:
        problems.append((split, name, f"has {size:,} bytes, not the {sizes[name]:,} written (truncated or replaced)"))
        readable = False
        continue
      if name in digests and fileio.is_local(path) and file_sha256(path) != digests[name]:
        problems.append((split, name, "does not hold the bytes written (its sha256 differs: corrupted)"))
        readable = False
        continue
      if read_records:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        try:
          count += _count_records(path)
        except tf.errors.OpError as e:
          problems.append((split, name, f"does not read: {_first_line(e)}"))
          readable = False
    if read_records and readable and count != int(info.get("num_samples", count)):
      problems.append((split, ", ".join(info.get("files", [])),
                       f"hold {count} records, not the {info['num_samples']} {DATASET_JSON} counts"))
  return problems


def reconvert_command(dataset_dir, meta):
  """The converter command that writes `dataset_dir` again, from its dataset.json (with --source when it had one)."""
  sources = [s.get("path") for s in (meta.get("sources") or {}).values() if isinstance(s, dict) and s.get("path")]
  extra = (f"--source={sources[0]} " if meta.get("name") == "folder" and sources else "") + "--overwrite"
  return convert_command(meta.get("name", "NAME"), dataset_dir, extra)


def describe_problems(dataset_dir, meta, problems):
  """One line naming the bad shards, their splits, and the command that fixes them."""
  listed = "; ".join(f"{os.path.join(dataset_dir, name)} ({split} split) {problem}"
                     for split, name, problem in problems[:3])
  more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
  return (f"Corrupted dataset: {listed}{more}. Convert it again: {reconvert_command(dataset_dir, meta)}")
