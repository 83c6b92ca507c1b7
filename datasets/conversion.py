"""The conversion driver: source files -> sharded TF-Slim TFRecords + labels.txt + dataset.json, safely.

    from datasets import conversion
    meta = conversion.convert_examples("folder", "/data/photos", class_names, splits, sources=..., options=...,
                                       pool=pool)

What it guarantees (README "What is safe"):
- It writes only its own files into the dataset directory and deletes only files a
  conversion of ours wrote there (listed in dataset.json, or in the pending list of a
  conversion that was killed). A directory holding another dataset, or files it cannot
  prove are its own (a `labels.txt`, shards), is refused with the fix.
- One converter per directory (a lock, slimflowers/core/locks.py).
- Shards are written by a process pool into a staging directory (`DIR/.convert-tmp-*`),
  then moved into DIR, then labels.txt, and dataset.json LAST (atomically). A directory
  without a valid dataset.json is never "complete" (`get_split` refuses it), so a kill at
  any moment is harmless; the next run cleans up what the killed one left.
- One bad file never stops a conversion: it is skipped and listed in dataset.json.
  Files that are not regular (FIFOs, sockets, devices) are never opened for reading
  in a way that could block.
"""
import fnmatch
import hashlib
import math
import multiprocessing
import os
import stat
import statistics
import tempfile
import time

from absl import logging

from datasets import dataset_utils
from datasets import images
from datasets import records
from slimflowers.core import errors
from slimflowers.core import fileio

STAGING_PREFIX = ".convert-tmp-"
PENDING_FILE = ".convert-pending.json"  # the files a conversion is moving into place (ours, if it was killed)
IMAGES_PER_SHARD = 256  # small shards: good load balance over workers, cheap to re-read
MAX_FILE_BYTES = 1 << 30  # a "photo" above 1 GiB is not read into memory
LOG_EVERY_SECS = 10.0
LEFTOVERS = (STAGING_PREFIX + "*", "*" + fileio.TMP_MARK + "*")


# ----------------------------------------------------------------------------------------------------------------------
# The directory: what is ours, what a re-run finds


def check_dataset_dir(dataset_dir, name, options, *, overwrite):
  """What a conversion into `dataset_dir` may do. Returns the existing dataset.json when a re-run is a no-op.

  Raises ConversionError when the directory holds another dataset, or this one with other
  options, and `overwrite` is off; or holds files no conversion of ours wrote.
  """
  meta = records.read_metadata(dataset_dir)
  if meta is not None:
    if overwrite:
      return None
    if meta.get("name") != name:
      raise dataset_utils.ConversionError(
          f"{dataset_dir} already holds dataset {meta.get('name')!r}. Convert {name} into another --dataset_dir, "
          f"or pass --overwrite to replace it (its shards, {records.LABELS_FILENAME} and {records.DATASET_JSON} are "
          "removed).")
    if meta.get("options") != options:
      raise dataset_utils.ConversionError(
          f"{dataset_dir} already holds {name} converted with options {meta.get('options')}, not {options}. "
          "Pass --overwrite to convert again with the new options, or use another --dataset_dir.")
    problems = records.shard_problems(dataset_dir, meta)  # sizes and checksums; --verify reads every record
    for split, name, problem in problems:
      logging.warning("%s (%s split) %s: converting %s again.", os.path.join(dataset_dir, name), split, problem,
                      dataset_dir)
    return None if problems else meta
  # Files this conversion would write (dataset.json, labels.txt, shards named like ours) that no conversion of
  # ours wrote: a killed one's are in its pending list, an older format's dataset.json is ours too.
  if _old_format(dataset_dir):
    return None
  pending = set(_pending(dataset_dir) or ())
  candidates = [f for f in (records.DATASET_JSON, records.LABELS_FILENAME) if fileio.exists(os.path.join(dataset_dir, f))]
  if fileio.isdir(dataset_dir):
    candidates += [f for f in fileio.listdir(dataset_dir) if fnmatch.fnmatchcase(f, f"{name}_*-of-*.tfrecord")]
  foreign = [f for f in candidates if f not in pending]
  if foreign:
    raise dataset_utils.ConversionError(
        f"{dataset_dir} holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''} that no conversion of "
        "ours wrote; they are left untouched. Convert into an empty or new --dataset_dir.")
  return None


def _old_format(dataset_dir):
  """True when dataset.json is ours but of another format version (it has a format_version)."""
  return "format_version" in fileio.read_json(os.path.join(dataset_dir, records.DATASET_JSON))


def _pending(dataset_dir):
  return fileio.read_json(os.path.join(dataset_dir, PENDING_FILE)).get("files")


def _remove_own_files(dataset_dir, names, why):
  removed = [n for n in names if fileio.exists(os.path.join(dataset_dir, n))]
  for n in removed:
    fileio.remove(os.path.join(dataset_dir, n))
  if removed:
    logging.warning("Removed %d file(s) of %s in %s.", len(removed), why, dataset_dir)


def clean_up(dataset_dir):
  """Removes what a killed conversion left: staging directories, temporary files, files it was moving in.

  Call with the directory's lock held.
  """
  fileio.remove_leftovers(dataset_dir, LEFTOVERS, what="a killed conversion")
  pending = _pending(dataset_dir)
  if pending and records.read_metadata(dataset_dir) is None:
    _remove_own_files(dataset_dir, pending, "a conversion that was killed before it finished")
  fileio.remove(os.path.join(dataset_dir, PENDING_FILE))


def _own_files(meta):
  return [f for s in meta.get("splits", {}).values() for f in s.get("files", [])] + [records.LABELS_FILENAME,
                                                                                     records.DATASET_JSON]


def remove_previous(dataset_dir):
  """--overwrite: removes the previous conversion's files (dataset.json first: the directory stops looking complete)."""
  meta = fileio.read_json(os.path.join(dataset_dir, records.DATASET_JSON))
  if "format_version" not in meta:
    return
  names = _own_files(meta)
  fileio.write_json_atomic(os.path.join(dataset_dir, PENDING_FILE), {"files": names})
  fileio.remove(os.path.join(dataset_dir, records.DATASET_JSON))
  _remove_own_files(dataset_dir, names, f"the previous conversion ({meta.get('name')}, --overwrite)")
  fileio.remove(os.path.join(dataset_dir, PENDING_FILE))


# ----------------------------------------------------------------------------------------------------------------------
# Workers (TensorFlow is imported lazily so the parent stays light)


def _read_regular_file(path):
  """The bytes of `path`; SkipImage for what is not a readable regular file (never blocks on a FIFO)."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
  except FileNotFoundError:
    raise images.SkipImage("broken symbolic link" if os.path.islink(path) else "vanished") from None
  except OSError as e:
    raise images.SkipImage(f"cannot read: {e.strerror}") from None
  try:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
      raise images.SkipImage("not a regular file (a FIFO, socket, device or directory)")
    if info.st_size > MAX_FILE_BYTES:
      raise images.SkipImage(f"{info.st_size:,} bytes: larger than {MAX_FILE_BYTES >> 20} MiB")
    with os.fdopen(fd, "rb", closefd=False) as f:
      return f.read()
  except OSError as e:
    raise images.SkipImage(f"cannot read: {e.strerror or e}") from None
  finally:
    os.close(fd)


def _init_worker():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:  # one thread per worker process: parallelism comes from the processes
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:
    pass


def write_shard(task):
  """Worker: converts one shard's files into `task["path"]`. Returns counts, skipped files, notes, sizes, digests."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  skipped, notes, digests, sizes = [], [], [], []
  with tf.io.TFRecordWriter(task["path"]) as writer:
    for path, label, name in task["examples"]:
      try:
        data = _read_regular_file(path) if fileio.is_local(path) else fileio.read_bytes(path)
        digests.append((name, hashlib.sha256(data).hexdigest()))
        jpeg, height, width, changes = images.prepare_image(data, task["max_image_side"], task.get("resize_to"))
      except images.SkipImage as e:
        skipped.append({"file": name, "reason": str(e)})
        continue
      if changes:
        notes.append({"file": name, "changes": changes})
      example = records.make_example(jpeg, label, height, width, name.rsplit("/", 1)[-1])
      writer.write(example.SerializeToString(deterministic=True))  # sorted map keys: the same bytes everywhere
      sizes.append((height, width))
  return {"split": task["split"], "index": task["index"], "written": len(sizes), "skipped": skipped,
          "notes": notes, "sizes": sizes, "digests": digests, "total": len(task["examples"]),
          "file": os.path.basename(task["path"]), "file_bytes": os.path.getsize(task["path"]),
          "file_sha256": records.file_sha256(task["path"])}


def _ready(_):
  return os.getpid()


class WorkerPool:
  """A process pool (spawn: safe with TensorFlow) or, for one worker, plain in-process calls."""

  def __init__(self, num_workers=None):
    if num_workers is not None and num_workers < 1:
      raise errors.BadValue(f"--num_workers={num_workers} must be >= 1 (or unset: all cores).")
    self.num_workers = num_workers or os.cpu_count() or 1
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
      logging.info("%s: %d/%d files, %.1f files/s", self.what, self.done, self.total,
                   self.done / max(now - self.start, 1e-9))

  @property
  def rate(self):
    return self.done / max(time.time() - self.start, 1e-9)


# ----------------------------------------------------------------------------------------------------------------------
# The driver


def _num_shards(n, requested):
  if requested:
    return max(1, min(int(requested), max(n, 1)))
  return max(1, math.ceil(n / IMAGES_PER_SHARD))


def size_summary(sizes):
  """{"height"|"width": {"min", "median", "max"}} of [(height, width)] (what the trainer's warnings read)."""
  if not sizes:
    return None
  return {dim: {"min": min(v), "median": statistics.median(v), "max": max(v)}
          for dim, v in (("height", [h for h, _ in sizes]), ("width", [w for _, w in sizes]))}


def convert_examples(name, dataset_dir, class_names, splits, *, sources, options, pool, num_shards=None,
                     max_image_side=images.DEFAULT_MAX_IMAGE_SIDE, resize_to=None):
  """Writes `splits` ({split: [(path, label)]}) as shards + labels.txt + dataset.json (last, atomically).

  `sources`: {file name: checksum info} of what was converted, recorded in dataset.json;
  a directory source gets a tree digest computed from the files read. `options` are the
  resolved conversion options, recorded so a re-run with other options is noticed.
  The caller holds the directory's lock and has called `check_dataset_dir`.
  """
  splits = {split: examples for split, examples in splits.items() if examples}  # e.g. --validation_size=0
  fileio.makedirs(dataset_dir)
  remove_previous(dataset_dir)
  local_dir = dataset_dir if fileio.is_local(dataset_dir) else None
  staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=fileio.local_path(local_dir) if local_dir else None)
  try:
    return _convert_into(name, dataset_dir, staging, class_names, splits, sources, options, num_shards, pool,
                         max_image_side, resize_to)
  finally:
    fileio.rmtree(staging)


def _shard_tasks(name, staging, splits, num_shards, max_image_side, resize_to):
  """One write_shard task per shard of each split, written into `staging`."""
  tasks = []
  for split, examples in splits.items():
    n_shards = _num_shards(len(examples), num_shards)
    per_shard = math.ceil(len(examples) / n_shards) if examples else 0
    for i in range(n_shards):
      chunk = examples[i * per_shard:(i + 1) * per_shard]
      tasks.append({"split": split, "index": i, "num_shards": n_shards, "max_image_side": max_image_side,
                    "resize_to": resize_to,
                    "path": os.path.join(staging, records.shard_filename(name, split, i, n_shards)),
                    "examples": [(p, label, dataset_utils.record_name(p)) for p, label in chunk]})
  return tasks


def _move_into_place(dataset_dir, tasks, class_names, meta):
  """Shards into place, then labels.txt, then dataset.json LAST: only now does the directory look complete.
  The pending list says which files are ours, should this process be killed half-way."""
  moved = [os.path.basename(t["path"]) for t in tasks] + [records.LABELS_FILENAME]
  fileio.write_json_atomic(os.path.join(dataset_dir, PENDING_FILE), {"files": moved})
  for task in tasks:
    target = os.path.join(dataset_dir, os.path.basename(task["path"]))
    if fileio.is_local(dataset_dir):
      os.chmod(task["path"], fileio.FILE_MODE)
      os.replace(task["path"], fileio.local_path(target))
    else:
      fileio.copy(task["path"], target)
  records.write_labels(dataset_dir, class_names)
  fileio.write_json_atomic(os.path.join(dataset_dir, records.DATASET_JSON), meta)
  fileio.remove(os.path.join(dataset_dir, PENDING_FILE))


def _convert_into(name, dataset_dir, staging, class_names, splits, sources, options, num_shards, pool, max_image_side,
                  resize_to):
  """convert_examples' body: shards into `staging`, then moved into `dataset_dir`, dataset.json last."""
  tasks = _shard_tasks(name, staging, splits, num_shards, max_image_side, resize_to)
  total = sum(len(e) for e in splits.values())
  # Files, not images yet: a file that is not a usable image is skipped (and counted) as it is read; the
  # final line gives the images written.
  logging.info("Converting %s: %d files (%s) into %d shards in %s", name, total,
               ", ".join(f"{s} {len(e)}" for s, e in splits.items()), len(tasks), dataset_dir)
  progress = Progress(f"Converting {name}", total)
  results = []
  for result in pool.imap_unordered(write_shard, tasks):
    results.append(result)
    progress.add(result["total"])
    for s in result["skipped"]:
      logging.warning("Skipped %s: %s", s["file"], s["reason"])
    for n in result["notes"]:
      logging.info("%s: %s", n["file"], "; ".join(n["changes"]))
  rate = progress.rate

  results.sort(key=lambda r: (r["split"], r["index"]))
  split_meta, skipped, notes, digests, all_sizes = {}, [], [], [], []
  for task in tasks:
    split_meta.setdefault(task["split"], {"num_samples": 0, "num_shards": task["num_shards"], "files": [],
                                          "sizes": []})
    split_meta[task["split"]]["files"].append(os.path.basename(task["path"]))
  for r in results:
    split_meta[r["split"]]["num_samples"] += r["written"]
    # What each shard was when written: a re-run and --verify notice a truncated or overwritten one.
    split_meta[r["split"]].setdefault("file_bytes", {})[r["file"]] = r["file_bytes"]
    split_meta[r["split"]].setdefault("file_sha256", {})[r["file"]] = r["file_sha256"]
    split_meta[r["split"]]["sizes"].extend(r["sizes"])
    all_sizes.extend(r["sizes"])
    skipped.extend(r["skipped"])
    notes.extend(r["notes"])
    digests.extend(r["digests"])
  for info in split_meta.values():
    info["image_sizes"] = size_summary(info.pop("sizes"))
  for info in sources.values():
    if info.get("tree_sha256") == "computed":
      h = hashlib.sha256()
      for name_, digest in sorted(digests):
        h.update(f"{name_}\0{digest}\n".encode("utf-8", "backslashreplace"))
      info["tree_sha256"] = h.hexdigest()

  meta = {
      "format_version": records.FORMAT_VERSION,
      "name": name,
      "num_classes": len(class_names),
      "class_names": list(class_names),
      "splits": split_meta,
      "image_sizes": size_summary(all_sizes),
      "num_skipped": len(skipped),
      "skipped": sorted(skipped, key=lambda s: s["file"]),
      "changed": sorted(notes, key=lambda n: n["file"]),
      "sources": sources,
      "options": options,
      "conversion_images_per_sec": round(rate, 1),
  }
  _move_into_place(dataset_dir, tasks, class_names, meta)
  logging.info("Wrote %s: %s images (%d of the %d files skipped) at %.1f images/s", dataset_dir,
               ", ".join(f"{s} {m['num_samples']}" for s, m in split_meta.items()), len(skipped), total, rate)
  return meta
