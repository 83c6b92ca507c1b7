"""The export directory's contract: what an export writes (export.json, labels.txt, the manifest) and what a
later export may replace there.

    EXPORT_DIR/saved_model/, model_<quant>.tflite, labels.txt, export.json, export_report.json, export_manifest.json

Outputs are written into a temporary sibling of --output_dir (`staging_dir`), renamed when complete, with
export_manifest.json listing every file written (size, sha256). An earlier export there is replaced: its own
files (listed, unchanged) go, anything its user added is moved into the new one; a directory without that
manifest (even with an export.json in it) is refused. export.json and export_report.json name the checkpoint
relative to its run's parent: no local path is shipped with the model.
"""
import contextlib
import dataclasses
import hashlib
import os
import re
import tempfile

from absl import logging
import tensorflow as tf

from datasets import records
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import locks
from slimflowers.core import run_dir
from slimflowers.data import preprocessing
from slimflowers.deploy import serving
from slimflowers.deploy import tflite

PROGRAM = "export_image_classifier.py"
FORMAT_VERSION = 1


def _saved_model_description(module, num_classes):
  outputs = {"logits": f"float32 [N, {num_classes}]", "probabilities": f"float32 [N, {num_classes}]",
             "top_k_classes": f"int32 [N, {module.top_k}]", "top_k_probabilities": f"float32 [N, {module.top_k}]",
             "top_k_labels": f"string [N, {module.top_k}]"}
  size = module.image_size
  return {"directory": serving.SAVED_MODEL_SUBDIR, "outputs": outputs, "signatures": {
      "serving_default": {"image_bytes": "string [N]: JPEG, PNG, GIF, BMP or WebP file contents"},
      "serving_images": {"images": "uint8 [N, H, W, 3] RGB"},
      "serving_examples": {"examples": "string [N]: serialized tf.Example with image/encoded"},
      "serving_preprocessed": {
          serving.TFLITE_INPUT: f"float32 [N, {size}, {size}, 3], preprocessed as 'preprocessing' says"},
  }}


def shipped_checkpoint_name(source):
  """The checkpoint as the shipped files name it: relative to its run's parent, e.g. `xception/ckpt-300`.

  export.json and export_report.json travel with the model: no absolute path (a home directory, the
  training machine's layout) goes into them.
  """
  train_dir = source.train_dir.rstrip("/")
  return f"{os.path.basename(train_dir)}/{os.path.relpath(source.prefix, train_dir)}"


def export_description(source, *, step, use_ema, module, tflite_models, saved_model=True):
  """export.json: what the files are and what an app must do around them."""
  tflite_files = {}
  for quantization, model in tflite_models.items():
    tflite_files[quantization] = {"file": tflite.tflite_filename(quantization), **model.describe()}
  steps = ["Preprocess the RGB photo as 'preprocessing' says (float32 NHWC).",
           "int8 models: quantize the input, q = round(x / scale + zero_point) clipped to [0, 255] (uint8), and "
           "dequantize the output, logits = (q - zero_point) * scale, with the 'quantization' parameters.",
           "probabilities = softmax(logits); class i is line i of the labels file ('i:name')."]
  return {
      "format_version": FORMAT_VERSION, "model_name": source.model_name, "num_classes": source.num_classes,
      "image_size": source.image_size, "preprocessing_name": source.preprocessing_name,
      "preprocessing": preprocessing.describe(source.preprocessing_name, source.image_size),
      "labels_file": records.LABELS_FILENAME, "checkpoint": shipped_checkpoint_name(source), "step": int(step),
      "use_ema": bool(use_ema),
      "top_k": module.top_k,
      "saved_model": _saved_model_description(module, source.num_classes) if saved_model else None,
      "tflite": tflite_files, "tflite_app_steps": steps,
  }


def read_export_json(export_dir):
  path = os.path.join(export_dir, run_dir.EXPORT_JSON)
  description = fileio.read_json(path)
  if not description:
    raise errors.NotFound(f"{export_dir} has no {run_dir.EXPORT_JSON}: not a directory written by "
                          "export_image_classifier.py. Export the model with it first.")
  return description


def read_class_names(export_dir, description):
  labels = records.read_labels(export_dir) if fileio.exists(os.path.join(export_dir, records.LABELS_FILENAME)) else {}
  return tuple(labels.get(i, str(i)) for i in range(int(description["num_classes"])))


def _all_names():
  """Every top-level name an export can write."""
  return _written_names(("saved_model",), tflite.QUANTIZATIONS)


def _written_names(formats, quantize):
  """The top-level names an export with these options writes."""
  names = {records.LABELS_FILENAME, run_dir.EXPORT_JSON, run_dir.EXPORT_REPORT, run_dir.EXPORT_MANIFEST}
  return (names | ({serving.SAVED_MODEL_SUBDIR} if "saved_model" in formats else set())
          | {tflite.tflite_filename(q) for q in quantize})


def _files_below(directory):
  """Relative paths ('a/b') of the files and symbolic links below `directory` (links never followed)."""
  if not fileio.is_local(directory):
    return sorted(os.path.relpath(os.path.join(d, f), directory).replace(os.sep, "/")
                  for d, _, files in tf.io.gfile.walk(directory) for f in files)
  directory = fileio.local_path(directory)
  found = []
  for d, dirnames, files in os.walk(directory):
    links = [n for n in dirnames if os.path.islink(os.path.join(d, n))]
    dirnames[:] = [n for n in dirnames if n not in links]
    found += [os.path.relpath(os.path.join(d, f), directory).replace(os.sep, "/") for f in files + links]
  return sorted(found)


def _sha256(path):
  if fileio.is_local(path):
    return records.file_sha256(path)
  return hashlib.sha256(fileio.read_bytes(path)).hexdigest()


def write_manifest(directory):
  """export_manifest.json: every file the export wrote, with its size and sha256 (what a later export may replace)."""
  files = {rel: {"bytes": fileio.size(os.path.join(directory, rel)), "sha256": _sha256(os.path.join(directory, rel))}
           for rel in _files_below(directory) if rel not in (run_dir.EXPORT_MANIFEST, locks.LOCK_NAME)}
  fileio.write_json_atomic(os.path.join(directory, run_dir.EXPORT_MANIFEST),
                           {"format_version": FORMAT_VERSION, "written_by": "export_image_classifier.py",
                            "files": files})


def _manifest_files(directory):
  """The manifest's {relative path: {"bytes", "sha256"}}, or None when `directory` holds no export manifest."""
  manifest = fileio.read_json(os.path.join(directory, run_dir.EXPORT_MANIFEST))
  files = manifest.get("files")
  if manifest.get("written_by") != "export_image_classifier.py" or not isinstance(files, dict):
    return None
  return files


def _unchanged(directory, rel, recorded):
  path = os.path.join(directory, rel)
  if not fileio.isfile(path) or (fileio.is_local(path) and os.path.islink(fileio.local_path(path))):
    return False
  return fileio.size(path) == recorded.get("bytes") and _sha256(path) == recorded.get("sha256")


@dataclasses.dataclass
class OutputDir:
  """An existing export directory: the export's own files, and what its user added or changed (kept)."""
  ours: list     # relative paths listed in the manifest, unchanged: replaced by the new export
  users: list    # relative paths (a whole top-level entry, or a file below saved_model/) the export did not write
  listed: dict   # the manifest's files


def inspect_output_dir(output_dir):
  """None when --output_dir is absent or empty; its OutputDir when it is an export; else a one-line refusal.

  A directory is an export only if it holds the manifest an export writes (a file merely called export.json
  is not enough). In an export, files listed in the manifest with the content recorded there are the
  export's; everything else (a NOTES.md, an app_assets/ folder, a labels.txt edited since) is the user's.
  """
  fileio.check_directory_flag("output_dir", output_dir)
  if not fileio.exists(output_dir) or not fileio.listdir(output_dir):
    return None
  listed = _manifest_files(output_dir)
  if listed is None:
    raise errors.BadValue(
        f"--output_dir={output_dir} exists and is not an export written by {PROGRAM} (no {run_dir.EXPORT_MANIFEST} "
        "listing its files): refusing to write into it. Pass a new or empty directory.")
  ours, users = [], []
  for name in fileio.listdir(output_dir):
    if name == run_dir.EXPORT_MANIFEST:
      continue
    below = [rel for rel in listed if rel.startswith(name + "/")]
    if below and fileio.isdir(os.path.join(output_dir, name)):  # a directory the export wrote: file by file
      for rel in _files_below(os.path.join(output_dir, name)):
        rel = f"{name}/{rel}"
        (ours if rel in listed and _unchanged(output_dir, rel, listed[rel]) else users).append(rel)
    else:
      (ours if name in listed and _unchanged(output_dir, name, listed[name]) else users).append(name)
  return OutputDir(ours=ours, users=users, listed=listed)


def check_output_dir(output_dir, formats, quantize, overwrite=False):
  """The existing export in --output_dir (or None); refuses when the new export would replace files of the user's.

  The user's files are kept (carried into the new export); those at a path the new export writes (a
  model_int8.tflite of their own, a labels.txt edited since) are replaced only with --overwrite.
  """
  existing = inspect_output_dir(output_dir)
  if existing is None:
    return None
  written = _written_names(formats, quantize)
  # A file at a path the new export writes: a top-level name it writes, or a changed file of the old export's
  # below one of its directories (saved_model/ is written again with the same layout).
  replaced = [rel for rel in existing.users
              if rel in written or ("/" in rel and rel.split("/")[0] in written and rel in existing.listed)]
  if replaced and not overwrite:
    raise errors.BadValue(
        f"--output_dir={output_dir} holds {', '.join(replaced[:5])}{' ...' if len(replaced) > 5 else ''}, which the "
        "export did not write (or which changed since it did), at a path the new export writes: move them away, "
        "or pass --overwrite to replace them.")
  kept = [rel for rel in existing.users if rel not in replaced]
  if kept:
    logging.info("Keeping %d file(s) in %s that the export did not write: %s", len(kept), output_dir,
                 ", ".join(kept[:5]) + (" ..." if len(kept) > 5 else ""))
  return existing


def _carry_users_files(output_dir, staging, overwrite):
  """Moves the user's entries of the old export into the new one (renames: same filesystem), before the swap."""
  existing = inspect_output_dir(output_dir)
  for rel in existing.users if existing else []:
    source, target = os.path.join(output_dir, rel), os.path.join(staging, rel)
    if os.path.lexists(target):
      if overwrite:
        continue  # --overwrite: the new export's file replaces it
      raise errors.BadValue(f"{source} appeared during the export, at a path the export writes; it is left in "
                            "place and the export is not replaced. Move it away, or pass --overwrite.")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(source, target)


def _leftover(output_dir, name):
  """True for the names of our temporary siblings of `output_dir` (tempfile.mkdtemp's or fileio.tmp_name's)."""
  base = re.escape(os.path.basename(output_dir.rstrip("/")) + fileio.TMP_MARK)
  return re.fullmatch(base + r"([a-z0-9_]{8}|[0-9a-f]{12})", name) is not None


def remove_leftovers(output_dir):
  """Removes `OUTPUT.tmp-*` siblings a killed export left (each up to a full copy of the model), with a log line.

  Only what an export wrote there goes: a sibling still in use by a running export (its lock) is skipped, and
  one that holds anything else (files of the user's being carried when the export was killed) is left in
  place and named.
  """
  if not fileio.is_local(output_dir):
    return []
  path = fileio.abspath(output_dir)
  parent = os.path.dirname(path)
  removed = []
  for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
    leftover = os.path.join(parent, name)
    if not _leftover(path, name) or not os.path.isdir(leftover) or os.path.islink(leftover):
      continue
    if locks.live_holder(leftover):
      continue  # an export still writing it
    listed = _manifest_files(leftover)
    entries = _files_below(leftover) if listed is not None else os.listdir(leftover)
    foreign = [e for e in entries if e not in (locks.LOCK_NAME, run_dir.EXPORT_MANIFEST) and not (
        e in listed if listed is not None else e in _all_names() or fileio.TMP_MARK in e)]
    if foreign:
      logging.warning("%s holds files an export did not write (%s): left in place. Move them back where they "
                      "belong, then delete it.", leftover, ", ".join(foreign[:5]))
      continue
    fileio.rmtree(leftover)
    removed.append(name)
  if removed:
    logging.warning("Removed %d leftover(s) of a killed export beside %s: %s", len(removed), output_dir,
                    ", ".join(removed))
  return removed


@contextlib.contextmanager
def staging_dir(output_dir, existing, overwrite=False):
  """A local directory to write into; it becomes output_dir when complete (renamed locally, copied to a URL).

  Before the swap the manifest is written and the user's entries of the old export are moved in; the old
  export's own files go with it. `existing`: check_output_dir's result.
  """
  if fileio.is_local(output_dir):
    with fileio.atomic_dir(output_dir, replace=fileio.exists(output_dir)) as tmp:  # absent, empty or an export
      lock = locks.DirLock(tmp, PROGRAM).acquire()  # a killed export's leftover vs. one still running
      yield tmp
      lock.release()
      write_manifest(tmp)
      _carry_users_files(output_dir, tmp, overwrite)
    return
  with tempfile.TemporaryDirectory(prefix="slimflowers_export_") as tmp:
    yield tmp
    write_manifest(tmp)
    for rel in existing.ours if existing else []:  # the old export's own files; the user's stay
      fileio.remove(os.path.join(output_dir, rel))
    for rel in _files_below(tmp):
      fileio.makedirs(os.path.dirname(os.path.join(output_dir, rel)))
      fileio.copy(os.path.join(tmp, rel), os.path.join(output_dir, rel))


def directory_bytes(directory):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(directory) for f in files)
