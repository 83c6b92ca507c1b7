"""Shared conversion machinery: source files -> sharded TF-Slim TFRecords + labels.txt + dataset.json.

    from datasets import dataset_utils
    dataset_utils.convert_examples(module, "/data/flowers", splits, class_names, sources, options)

Each dataset module only says *which* files exist and which (label, split) each one
gets; everything else lives here, once:

- images: valid RGB JPEG bytes are kept byte-for-byte (height/width from the header
  via `tf.image.extract_jpeg_shape`), after a full decode to catch truncation;
  PNG, GIF (first frame), BMP, grayscale and CMYK JPEG are re-encoded as RGB JPEG
  (quality 95); anything unreadable is skipped with a warning and listed in
  dataset.json under "skipped" -- one bad file never crashes a conversion and
  never shifts a label (each record carries its own label and file name).
- shards: a multiprocessing pool over shards; each worker writes its own shard
  into a staging directory (`DIR/.convert-tmp-*`). Shards are moved into DIR, then
  labels.txt, and dataset.json is written LAST, atomically. A directory without a
  valid dataset.json is never "complete" (`get_split` refuses it), so a kill at
  any moment is harmless; the next run cleans the leftovers and starts over.
- downloads: `urllib.request` with a timeout, size + sha256/md5 verification, and an
  error naming the file, its URL and the exact path to put it by hand.
- archives are opened by content (Oxford 102's ".tgz" is a plain tar).
"""
import dataclasses
import glob
import hashlib
import json
import math
import multiprocessing
import os
import random
import shutil
import tarfile
import tempfile
import time
import urllib.request

from absl import logging

from slimflowers import fileio

FORMAT_VERSION = 1
DATASET_JSON = "dataset.json"
LABELS_FILENAME = "labels.txt"
STAGING_PREFIX = ".convert-tmp-"
IMAGES_PER_SHARD = 256  # small shards: good load balance over workers, cheap to re-read
DOWNLOAD_TIMEOUT_SECS = 60
JPEG_QUALITY = 95
LOG_EVERY_SECS = 10.0

# Keys of the TF-Slim Example format (research/slim/datasets/dataset_utils.py image_to_tfexample),
# plus image/filename (the source file's base name) so every record can be traced back.
FEATURE_KEYS = ("image/encoded", "image/format", "image/class/label", "image/height", "image/width",
                "image/filename")


class ConversionError(RuntimeError):
  """Conversion cannot proceed (bad source, failed download); the message says how to fix it."""


class SkipImage(Exception):
  """This one file cannot be converted; it is skipped and recorded, the conversion goes on."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
  """An upstream file: where it comes from and how to recognise it."""
  filename: str
  url: str
  size: int = None
  sha256: str = None
  md5: str = None


@dataclasses.dataclass(frozen=True)
class DatasetSplit:
  """What a reader needs about one converted split (sizes come from dataset.json)."""
  name: str
  split_name: str
  dataset_dir: str
  num_samples: int
  num_classes: int
  labels_to_names: dict
  file_pattern: str
  filenames: list


def shard_filename(name, split, index, num_shards):
  return f"{name}_{split}_{index:05d}-of-{num_shards:05d}.tfrecord"


def convert_command(name, dataset_dir, extra=""):
  return (f"python download_and_convert_data.py --dataset_name={name} --dataset_dir={dataset_dir}"
          + (" " + extra if extra else ""))


# ----------------------------------------------------------------------------------------------------------------------
# Downloads and archives


def _file_digest(path, algorithm):
  h = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def verify_file(path, remote):
  """Returns {"size", "sha256"|"md5"} of `path`; raises ConversionError on a size or checksum mismatch."""
  size = os.path.getsize(path)
  fix = (f"Delete it and re-run to download it again, or put the right file at {path} "
         f"(from {remote.url}).")
  if remote.size is not None and size != remote.size:
    raise ConversionError(f"{remote.filename}: size {size:,} B at {path}, expected {remote.size:,} B. {fix}")
  info = {"size": size}
  for algorithm in ("sha256", "md5"):
    expected = getattr(remote, algorithm)
    if expected:
      actual = _file_digest(path, algorithm)
      if actual != expected:
        raise ConversionError(f"{remote.filename}: {algorithm} {actual} at {path}, expected {expected}. {fix}")
      info[algorithm] = actual
  return info


def _local_copy(remote, dataset_dir, source):
  """The path of an existing local copy of `remote` in `source` (a directory or the file) or `dataset_dir`."""
  candidates = []
  if source:
    candidates.append(source if os.path.isfile(source) and os.path.basename(source) == remote.filename
                      else os.path.join(source, remote.filename))
  candidates.append(os.path.join(dataset_dir, remote.filename))
  return next((p for p in candidates if os.path.isfile(p)), None)


def fetch(remote, dataset_dir, source=None):
  """Returns (local path, checksum info) of `remote`, downloading it into `dataset_dir` when absent.

  Looks in `source` (a directory or the file itself) and then `dataset_dir`. A download goes
  to a temporary name and is renamed only after its size and checksum match.
  """
  local = _local_copy(remote, dataset_dir, source)
  if local:
    return local, verify_file(local, remote)
  target = os.path.join(dataset_dir, remote.filename)
  logging.info("Downloading %s from %s", remote.filename, remote.url)
  os.makedirs(dataset_dir, exist_ok=True)
  try:
    with fileio.atomic_path(target) as tmp:
      with urllib.request.urlopen(remote.url, timeout=DOWNLOAD_TIMEOUT_SECS) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
      info = verify_file(tmp, remote)
  except ConversionError:
    raise
  except Exception as e:  # offline, DNS, HTTP error, timeout, ...
    raise ConversionError(
        f"Could not download {remote.filename} from {remote.url}: {e}. If this machine is offline, "
        f"download it elsewhere and put it at {target} (or pass --source=DIR holding it), then re-run.") from e
  return target, info


def extract_archive(archive_path, dest_parent, member_root):
  """Extracts a tar archive (compressed or not: opened by content) so `dest_parent/member_root` exists.

  Extraction goes to a temporary directory renamed into place, so a killed extraction
  never leaves a half-filled `member_root` that later looks complete.
  """
  final = os.path.join(dest_parent, member_root)
  if os.path.isdir(final):
    return final
  if not tarfile.is_tarfile(archive_path):
    raise ConversionError(f"{archive_path} is not a tar archive (gzip or plain). Delete it and re-run to download "
                          "it again.")
  with fileio.atomic_dir(final) as tmp:
    with tarfile.open(archive_path, "r:*") as tar:  # "r:*": compression detected from the content
      kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
      tar.extractall(tmp, **kwargs)
    inner = os.path.join(tmp, member_root)
    if not os.path.isdir(inner):
      raise ConversionError(f"{archive_path} has no top-level '{member_root}/' directory: not the expected archive.")
    # Move the archive's member_root up to be the staged directory itself.
    for entry in os.listdir(inner):
      os.replace(os.path.join(inner, entry), os.path.join(tmp, entry))
    os.rmdir(inner)
  return final


def fetch_and_extract(remote, dataset_dir, source, member_root):
  """Returns (directory `member_root` with the archive's content, {source name: checksum info}).

  Uses, in order: an archive in `source` or `dataset_dir` (verified, extracted once), an
  already extracted `member_root/` in `source` or `dataset_dir` (its files get a tree digest),
  or a download.
  """
  if not _local_copy(remote, dataset_dir, source):
    for parent in ([source] if source and os.path.isdir(source) else []) + [dataset_dir]:
      extracted = os.path.join(parent, member_root)
      if os.path.isdir(extracted):
        return extracted, {member_root + "/": {"tree_sha256": "computed"}}
  path, info = fetch(remote, dataset_dir, source)
  return extract_archive(path, dataset_dir, member_root), {remote.filename: info}


# ----------------------------------------------------------------------------------------------------------------------
# Listing and splitting


def list_class_folders(root):
  """Returns (sorted class names, [(path, label)]) for a directory of class sub-folders."""
  if not os.path.isdir(root):
    raise ConversionError(f"Source directory {root} does not exist. Pass --source=DIR with one sub-folder per class.")
  class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
  if not class_names:
    raise ConversionError(f"{root} has no class sub-folders (expected {root}/<class_name>/<image files>).")
  examples = []
  for label, class_name in enumerate(class_names):
    class_dir = os.path.join(root, class_name)
    for dirpath, dirnames, filenames in os.walk(class_dir):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
      for f in sorted(filenames):
        if not f.startswith("."):
          examples.append((os.path.join(dirpath, f), label))
  return class_names, examples


def resolve_size(value, total, flag):
  """A count (int >= 1 or 0) or a fraction in (0, 1) of `total` -> a count."""
  if value is None:
    return 0
  value = float(value)
  if value < 0:
    raise ValueError(f"--{flag}={value} must be >= 0: a count of images or a fraction in (0, 1).")
  if 0 < value < 1:
    return int(round(value * total))
  if value != int(value):
    raise ValueError(f"--{flag}={value}: use a whole count of images or a fraction in (0, 1).")
  return int(value)


def random_split(examples, validation_size, test_size, seed):
  """TF-Slim's flowers split: shuffle with `seed`, first -> validation, next -> test, rest -> train."""
  examples = list(examples)
  random.Random(seed).shuffle(examples)
  n_val = resolve_size(validation_size, len(examples), "validation_size")
  n_test = resolve_size(test_size, len(examples), "test_size")
  if n_val + n_test > len(examples):
    raise ValueError(f"--validation_size ({n_val}) + --test_size ({n_test}) exceed the {len(examples)} images found. "
                     "Lower them.")
  splits = {"train": examples[n_val + n_test:], "validation": examples[:n_val]}
  if n_test:
    splits["test"] = examples[n_val:n_val + n_test]
  return splits


# ----------------------------------------------------------------------------------------------------------------------
# Images (run inside workers: TensorFlow is imported lazily so the parent stays light)

_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"BM", "bmp"))


def sniff_format(data):
  for magic, fmt in _MAGIC:
    if data.startswith(magic):
      return fmt
  return None


def prepare_image(data):
  """Returns (jpeg_bytes, height, width) ready for a record; raises SkipImage(reason) for bad input."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  fmt = sniff_format(data)
  if fmt is None:
    raise SkipImage("not a JPEG, PNG, GIF or BMP image")
  try:
    if fmt == "jpeg":
      height, width, channels = (int(v) for v in tf.image.extract_jpeg_shape(data).numpy())
      tf.io.decode_jpeg(data, channels=0)  # full decode: a truncated or corrupt file fails here
      if channels == 3:
        return data, height, width  # kept byte-for-byte
      image = tf.io.decode_jpeg(data, channels=3)  # grayscale / CMYK -> RGB
    else:
      image = tf.io.decode_image(data, channels=3, expand_animations=False)  # GIF: first frame
    height, width = int(image.shape[0]), int(image.shape[1])
    if height == 0 or width == 0:
      raise SkipImage("empty image")
    return tf.io.encode_jpeg(image, quality=JPEG_QUALITY).numpy(), height, width
  except SkipImage:
    raise
  except Exception as e:  # TF raises InvalidArgumentError for corrupt data
    message = str(e).splitlines()[0].split("}} ")[-1]  # drop TF's "{{function_node ...}}" prefix
    raise SkipImage(f"cannot decode: {message[:200]}") from None


def make_example(jpeg_bytes, label, height, width, filename):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  def _bytes(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
  def _int(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
  return tf.train.Example(features=tf.train.Features(feature={
      "image/encoded": _bytes(jpeg_bytes),
      "image/format": _bytes(b"jpg"),
      "image/class/label": _int(label),
      "image/height": _int(height),
      "image/width": _int(width),
      "image/filename": _bytes(filename.encode("utf-8")),
  }))


def _init_worker():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:  # one thread per worker process: parallelism comes from the processes
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:
    pass


def write_shard(task):
  """Worker: converts one shard's files into `task["path"]`. Returns counts, skipped files and file digests."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  skipped, digests, written = [], [], 0
  with tf.io.TFRecordWriter(task["path"]) as writer:
    for path, label, record_name in task["examples"]:
      try:
        with open(path, "rb") as f:
          data = f.read()
      except OSError as e:
        skipped.append({"file": record_name, "reason": f"cannot read: {e}"})
        continue
      digests.append((record_name, hashlib.sha256(data).hexdigest()))
      try:
        jpeg, height, width = prepare_image(data)
      except SkipImage as e:
        skipped.append({"file": record_name, "reason": str(e)})
        continue
      writer.write(make_example(jpeg, label, height, width, os.path.basename(path)).SerializeToString(
          deterministic=True))  # sorted map keys: the same bytes in every process
      written += 1
  return {"split": task["split"], "index": task["index"], "written": written, "skipped": skipped,
          "digests": digests, "total": len(task["examples"])}


def _ready(_):
  return os.getpid()


class WorkerPool:
  """A process pool (spawn: safe with TensorFlow) or, for one worker, plain in-process calls."""

  def __init__(self, num_workers=None):
    self.num_workers = max(1, num_workers or os.cpu_count() or 1)
    self._pool = None

  def __enter__(self):
    if self.num_workers > 1:
      self._pool = multiprocessing.get_context("spawn").Pool(self.num_workers, initializer=_init_worker)
      # Wait for the workers' TensorFlow import, so progress rates measure work, not start-up.
      self._pool.map(_ready, range(self.num_workers), chunksize=1)
    return self

  def __exit__(self, *exc):
    if self._pool is not None:
      if exc[0] is None:
        self._pool.close()
      else:
        self._pool.terminate()
      self._pool.join()
      self._pool = None

  def imap_unordered(self, fn, tasks):
    if self._pool is None:
      return map(fn, tasks)
    return self._pool.imap_unordered(fn, tasks)


class Progress:
  """Logs "done/total images, images/s" at most every LOG_EVERY_SECS (and at the end)."""

  def __init__(self, what, total):
    self.what, self.total, self.done = what, total, 0
    self.start = self.last = time.time()

  def add(self, n):
    self.done += n
    now = time.time()
    if now - self.last >= LOG_EVERY_SECS or self.done >= self.total:
      self.last = now
      logging.info("%s: %d/%d images, %.1f images/s", self.what, self.done, self.total,
                   self.done / max(now - self.start, 1e-9))

  @property
  def rate(self):
    return self.done / max(time.time() - self.start, 1e-9)


# ----------------------------------------------------------------------------------------------------------------------
# The conversion driver


def read_metadata(dataset_dir):
  """Returns the parsed dataset.json, or None when absent or unreadable (an incomplete conversion)."""
  path = os.path.join(dataset_dir, DATASET_JSON)
  try:
    with open(path, encoding="utf-8") as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION or "splits" not in meta:
    return None
  return meta


def _num_shards(n, requested):
  if requested:
    return max(1, min(int(requested), max(n, 1)))
  return max(1, math.ceil(n / IMAGES_PER_SHARD))


def _remove_outputs(dataset_dir, name):
  """Removes dataset.json FIRST (the directory stops looking complete), then old shards and leftovers."""
  for path in (os.path.join(dataset_dir, DATASET_JSON), os.path.join(dataset_dir, LABELS_FILENAME)):
    if os.path.exists(path):
      os.remove(path)
  for path in glob.glob(os.path.join(dataset_dir, f"{name}_*.tfrecord")):
    os.remove(path)
  for path in glob.glob(os.path.join(dataset_dir, STAGING_PREFIX + "*")):
    shutil.rmtree(path, ignore_errors=True)


def is_converted(dataset_dir, name, options):
  """True when dataset_dir holds a complete conversion of `name` with the same options (a re-run is a no-op)."""
  meta = read_metadata(dataset_dir)
  if meta is None or meta.get("name") != name:
    return False
  if meta.get("options") != options:
    raise ConversionError(
        f"{dataset_dir} already holds {name} converted with options {meta.get('options')}, not {options}. "
        "Pass --overwrite to convert again with the new options, or use another --dataset_dir.")
  for split in meta["splits"].values():
    for f in split["files"]:
      if not os.path.isfile(os.path.join(dataset_dir, f)):
        return False
  return True


def convert_examples(name, dataset_dir, class_names, splits, *, sources, options, num_shards=None, num_workers=None,
                     pool=None):
  """Writes `splits` ({split: [(path, label)]}) as shards + labels.txt + dataset.json (last, atomically).

  `sources`: {file name: checksum info} of what was converted, recorded in dataset.json;
  a directory source gets a tree digest computed from the files read. `options` are the
  resolved conversion options, recorded so a re-run with other options is noticed.
  """
  splits = {split: examples for split, examples in splits.items() if examples}  # e.g. --validation_size=0
  os.makedirs(dataset_dir, exist_ok=True)
  _remove_outputs(dataset_dir, name)
  staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dataset_dir)
  try:
    return _convert_into(name, dataset_dir, staging, class_names, splits, sources, options, num_shards, num_workers,
                         pool)
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def _convert_into(name, dataset_dir, staging, class_names, splits, sources, options, num_shards, num_workers, pool):
  """convert_examples' body: shards into `staging`, then moved into `dataset_dir`, dataset.json last."""
  tasks = []
  for split, examples in splits.items():
    n_shards = _num_shards(len(examples), num_shards)
    per_shard = math.ceil(len(examples) / n_shards) if examples else 0
    for i in range(n_shards):
      chunk = examples[i * per_shard:(i + 1) * per_shard]
      tasks.append({"split": split, "index": i, "num_shards": n_shards,
                    "path": os.path.join(staging, shard_filename(name, split, i, n_shards)),
                    "examples": [(p, label, _record_name(p)) for p, label in chunk]})
  total = sum(len(e) for e in splits.values())
  logging.info("Converting %s: %s images into %d shards in %s", name,
               {s: len(e) for s, e in splits.items()}, len(tasks), dataset_dir)
  progress = Progress(f"Converting {name}", total)
  results = []
  own_pool = pool is None
  if own_pool:
    pool = WorkerPool(min(num_workers or os.cpu_count() or 1, len(tasks)))
    pool.__enter__()
  try:
    for result in pool.imap_unordered(write_shard, tasks):
      results.append(result)
      progress.add(result["total"])
      for s in result["skipped"]:
        logging.warning("Skipped %s: %s", s["file"], s["reason"])
  finally:
    if own_pool:
      pool.__exit__(None, None, None)
  rate = progress.rate

  results.sort(key=lambda r: (r["split"], r["index"]))
  split_meta, skipped, digests = {}, [], []
  for task in tasks:
    split_meta.setdefault(task["split"], {"num_samples": 0, "num_shards": task["num_shards"], "files": []})
    split_meta[task["split"]]["files"].append(os.path.basename(task["path"]))
  for r in results:
    split_meta[r["split"]]["num_samples"] += r["written"]
    skipped.extend(r["skipped"])
    digests.extend(r["digests"])
  for info in sources.values():
    if info.get("tree_sha256") == "computed":
      h = hashlib.sha256()
      for record_name, digest in sorted(digests):
        h.update(f"{record_name}\0{digest}\n".encode())
      info["tree_sha256"] = h.hexdigest()

  # Move shards into place, then labels.txt, then dataset.json LAST: only now does the directory look complete.
  for task in tasks:
    os.replace(task["path"], os.path.join(dataset_dir, os.path.basename(task["path"])))
  write_labels(dataset_dir, class_names)
  meta = {
      "format_version": FORMAT_VERSION,
      "name": name,
      "num_classes": len(class_names),
      "class_names": list(class_names),
      "splits": split_meta,
      "num_skipped": len(skipped),
      "skipped": sorted(skipped, key=lambda s: s["file"]),
      "sources": sources,
      "options": options,
      "conversion_images_per_sec": round(rate, 1),
  }
  fileio.write_json_atomic(os.path.join(dataset_dir, DATASET_JSON), meta)
  logging.info("Wrote %s: %s (%d skipped) at %.1f images/s", dataset_dir,
               {s: m["num_samples"] for s, m in split_meta.items()}, len(skipped), rate)
  return meta


def _record_name(path):
  """The name a skipped file is reported under: class folder + base name (enough to find it)."""
  parent = os.path.basename(os.path.dirname(path))
  return f"{parent}/{os.path.basename(path)}" if parent else os.path.basename(path)


def write_labels(dataset_dir, class_names):
  fileio.write_text_atomic(os.path.join(dataset_dir, LABELS_FILENAME),
                           "".join(f"{i}:{n}\n" for i, n in enumerate(class_names)))


def read_labels(dataset_dir):
  labels = {}
  with open(os.path.join(dataset_dir, LABELS_FILENAME), encoding="utf-8") as f:
    for line in f:
      if line.strip():
        i, name = line.rstrip("\n").split(":", 1)
        labels[int(i)] = name
  return labels


def parse_example(serialized):
  """Parses one serialized record into a dict of tensors (label as int32)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  features = tf.io.parse_single_example(serialized, {
      "image/encoded": tf.io.FixedLenFeature([], tf.string),
      "image/format": tf.io.FixedLenFeature([], tf.string, default_value="jpg"),
      "image/class/label": tf.io.FixedLenFeature([], tf.int64),
      "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
      "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
      "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
  })
  features["image/class/label"] = tf.cast(features["image/class/label"], tf.int32)
  return features
