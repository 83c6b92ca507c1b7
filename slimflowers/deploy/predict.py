r"""The predict_image_classifier.py program: the top-k classes of image files, from an export or a checkpoint.

    python predict_image_classifier.py --model=exports/xception photos/ more/*.jpg one.png --top_k=3 \
        --output=predictions.csv
    # 12:00:41 Classified 1,234 of 1,236 files in 41.2 s (30.0 images/s); 2 could not be classified (error column).

--model is one of:
- an export directory (export_image_classifier.py's --output_dir): its SavedModel's `serving_default`
  on the file bytes, preprocessing inside the graph;
- a `.tflite` file of an export: the preprocessing export.json names (this project's code), then LiteRT;
- a run directory or checkpoint: the Keras model restored as the evaluator restores it
  (exact_eval.restore), with the run's preprocessing.

Directories are walked as the converter walks them (datasets.dataset_utils.walk_files: sorted, names
starting with "." skipped, directory links not followed, so a link loop cannot make the walk endless);
each file is classified once. Every file gets one row, in that order:
`path,label_1,probability_1,...,label_k,probability_k,error` in CSV, or one JSON object per line
(`--output=*.jsonl`); without --output the top-1 class of each file is printed. An existing --output
is replaced only when predict wrote it (its first line is predict's CSV header or JSON row), or with
--overwrite.

Before anything is decoded, each file's header is screened with the converter's limits
(datasets/images.py): an image claiming more pixels than it can hold or than is safe to decode
(a decompression bomb) gets an error row at no memory cost, and a JPEG with a side above 4096 px is
decoded at reduced scale, as the converter stores it. Files are then read, decoded and batched by
tf.data in parallel (order kept). A file that cannot be classified (unreadable, truncated, not an
image) is left out of the batches (ignore_errors over enumerated files), and the decoder's message for
those few is then obtained eagerly: its row holds the error and the run goes on. Exit code 0 unless no
file at all could be classified.
"""
import csv
import dataclasses
import io
import json
import os
import re
import stat
import time

from absl import logging
import numpy as np
import tensorflow as tf

from datasets import dataset_utils
from datasets import images
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.deploy import export_files
from slimflowers.deploy import serving
from slimflowers.deploy import tflite
from slimflowers.eval import exact as exact_eval
from slimflowers.eval import metrics
from slimflowers.eval import model_source

OUTPUT_FORMATS = (".csv", ".jsonl")
PROGRESS_SECS = 10.0
_GLOB_CHARS = re.compile(r"[*?\[]")


class NothingClassified(errors.UserError, RuntimeError):
  """Not one of the given files could be classified."""
  exit_code = 1


@dataclasses.dataclass
class Prediction:
  path: str
  top_k: list          # [(class id, label, probability)], best first; [] when the file failed
  error: str = None


# ----------------------------------------------------------------------------------------------------------------------
# Inputs


def _walk(directory):
  """The converter's walk (directory links not followed: a link loop cannot make it endless), sorted."""
  if fileio.is_local(directory):
    return sorted(dataset_utils.walk_files(fileio.local_path(directory)))
  found = []
  for root, dirnames, filenames in tf.io.gfile.walk(directory):  # object stores: no links
    dirnames[:] = sorted(d for d in dirnames if not d.rstrip("/").startswith("."))
    found += [os.path.join(root, f) for f in filenames if not f.startswith(".")]
  return sorted(found)


def list_files(paths):
  """The files to classify: files as given, directories walked, unmatched quoted globs expanded; order kept,
  each file once.

  A path that does not exist stays in the list: its row will say so.
  """
  files = []
  for path in paths:
    if fileio.isdir(path):
      files += _walk(path)
    elif not fileio.exists(path) and _GLOB_CHARS.search(path):
      files += [p for p in fileio.glob(path) if not fileio.isdir(p)] or [path]
    else:
      files.append(path)
  if not files:
    raise errors.NotFound(f"No files to classify in {' '.join(paths) or '(no paths given)'}. Pass image files or "
                          "directories after the flags, e.g. predict_image_classifier.py --model=exports/x photos/")
  seen = set()
  unique = [f for f in files if not (os.path.normpath(f) in seen or seen.add(os.path.normpath(f)))]
  if len(unique) < len(files):
    logging.info("%d file(s) named more than once are classified once.", len(files) - len(unique))
  return unique


def screen(path):
  """images.screen_file on `path`'s header: ("decode" | "shrink" | None, None), or (None, the reason it is refused).

  Nothing is decoded here: an image whose header claims more pixels than the converter's limit (a
  decompression bomb) becomes an error row without costing its gigabytes.
  """
  try:
    if fileio.is_local(path):
      fd = os.open(fileio.local_path(path), os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block
      with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
          return None, "not a regular file (a FIFO, socket, device or directory)"
        return images.screen_file(f, info.st_size), None
    with tf.io.gfile.GFile(path, "rb") as f:
      return images.screen_file(f, fileio.size(path)), None
  except images.SkipImage as e:
    return None, str(e)
  except (OSError, tf.errors.OpError):
    return None, None  # unreadable: the reader's own message


def _shrunk(data):
  """A JPEG with a side above images.DEFAULT_MAX_IMAGE_SIDE, decoded at reduced scale and re-encoded at that size,
  as the converter stores it (datasets/images.py): its memory stays bounded."""
  return images.prepare_image(bytes(data), images.DEFAULT_MAX_IMAGE_SIDE)[0]


def image_batches(files, image_size, preprocessing_name, batch_size, shrink=None):
  """(file indices, file bytes, preprocessed images) batches; files that fail to read or decode are left out.

  `files`: [(index, path)]; `shrink`: the indices to decode at reduced scale first (_shrunk).
  """
  shrink = shrink or set()

  def load(index, path, reduce):
    data = tf.io.read_file(path)
    data = tf.cond(reduce, lambda: tf.reshape(tf.numpy_function(_shrunk, [data], tf.string, stateful=False), []),
                   lambda: data)
    return index, data, serving.preprocess_image_bytes(data, image_size, preprocessing_name)

  indices = tf.constant([i for i, _ in files], tf.int64)
  paths = tf.constant([p for _, p in files], tf.string)
  reduce = tf.constant([i in shrink for i, _ in files], tf.bool)
  ds = tf.data.Dataset.from_tensor_slices((indices, paths, reduce))
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def clean_message(message):
  """The decoder's message without TensorFlow's node and op decorations."""
  message = re.sub(r"\{\{[^}]*\}\}", "", message)
  message = re.sub(r"\[Op:[^\]]*\]( name:)?", "", message)
  return " ".join(message.split()) or "unknown error"


def error_message(path, image_size, preprocessing_name, shrink=False):
  """Why `path` cannot be classified: the same read and decode, run eagerly to get the message."""
  try:
    data = tf.io.read_file(path)
    if shrink:
      data = _shrunk(data.numpy())
    serving.preprocess_image_bytes(data, image_size, preprocessing_name)
  except tf.errors.OpError as e:
    return clean_message(e.message)
  except images.SkipImage as e:
    return str(e)
  return "could not be read (did the file change while it was read?)"


# ----------------------------------------------------------------------------------------------------------------------
# Models


class SavedModelPredictor:
  """An export directory: its SavedModel's serving_default on the raw file bytes."""

  def __init__(self, export_dir):
    description = export_files.read_export_json(export_dir)
    saved_model = os.path.join(export_dir, serving.SAVED_MODEL_SUBDIR)
    self._loaded = tf.saved_model.load(saved_model)  # kept: the signature needs its variables alive
    self._serve = self._loaded.signatures["serving_default"]
    self.image_size, self.preprocessing_name = int(description["image_size"]), description["preprocessing_name"]
    self.class_names = export_files.read_class_names(export_dir, description)
    self.what = f"SavedModel {saved_model} (serving_default)"

  def probabilities(self, image_bytes, images):
    del images  # decoded again inside the SavedModel, exactly as a server would
    return self._serve(image_bytes=image_bytes)["probabilities"].numpy()


class TFLitePredictor:
  """A .tflite file next to its export.json: this project's preprocessing, then the LiteRT interpreter."""

  def __init__(self, path):
    export_dir = os.path.dirname(path) or "."
    description = export_files.read_export_json(export_dir)
    self.image_size, self.preprocessing_name = int(description["image_size"]), description["preprocessing_name"]
    self.class_names = export_files.read_class_names(export_dir, description)
    self._model = tflite.TFLiteModel(model_content=fileio.read_bytes(path), num_threads=os.cpu_count())
    shape = self._model.input_details["shape_signature"]
    if list(shape[1:]) != [self.image_size, self.image_size, 3]:
      raise errors.BadValue(f"{path} takes inputs of shape {list(shape)} but {export_dir}/export.json says "
                            f"{self.image_size} px: the file does not belong to this export. Re-export it.")
    self.what = f"TFLite {path}"

  def probabilities(self, image_bytes, images):
    del image_bytes
    return tf.nn.softmax(self._model.logits(images.numpy())).numpy()


class CheckpointPredictor:
  """A run directory or checkpoint: the Keras model restored as the evaluator restores it."""

  def __init__(self, path, use_ema=False):
    source = model_source.resolve_source(path)
    model, step = model_source.build_model(source, use_ema=use_ema)
    self.image_size, self.preprocessing_name = source.image_size, source.preprocessing_name
    self.class_names = source.class_names
    self._forward = tf.function(
        lambda x: tf.nn.softmax(exact_eval.inference_logits(model, x)),
        reduce_retracing=True)
    self.what = f"checkpoint {source.prefix} (step {step}{', EMA weights' if use_ema else ''})"
    info = run_dir.read_run_info(source.train_dir)
    if info and not info.get("finished"):
      logging.warning("The run in %s has not finished training: these predictions come from its checkpoint at step "
                      "%d of %s, not from its final model.", source.train_dir, step, info.get("max_steps", "?"))

  def probabilities(self, image_bytes, images):
    del image_bytes
    return self._forward(images).numpy()


def load_predictor(model, use_ema=False):
  """The predictor for --model: an export directory, a .tflite file, or a run directory / checkpoint."""
  model = model.rstrip("/")
  is_export = fileio.exists(os.path.join(model, serving.SAVED_MODEL_SUBDIR, "saved_model.pb"))
  is_tflite = model.endswith(".tflite")
  if use_ema and (is_export or is_tflite):
    raise errors.BadValue("--use_ema applies to checkpoints only: an export holds the weights it was exported with "
                          "(export_image_classifier.py --use_ema).")
  if is_tflite:
    if not fileio.exists(model):
      raise errors.NotFound(f"--model={model} does not exist.")
    return TFLitePredictor(model)
  if is_export:
    return SavedModelPredictor(model)
  try:
    return CheckpointPredictor(model, use_ema=use_ema)
  except errors.NotFound as e:
    raise errors.NotFound(f"--model={model} is not an export directory (no {serving.SAVED_MODEL_SUBDIR}/"
                          f"saved_model.pb), not a .tflite file, and not a checkpoint: {e}") from e


# ----------------------------------------------------------------------------------------------------------------------
# Predicting


def _progress(done, total, start):
  secs = time.monotonic() - start
  rate = done / max(secs, 1e-9)
  eta = (total - done) / max(rate, 1e-9)
  logging.info("%d/%d files, %.1f images/s, ETA %d:%02d", done, total, rate, eta // 60, eta % 60)


def predict(predictor, files, *, top_k=5, batch_size=64):
  """One Prediction per file, in order."""
  k = metrics.effective_top_k(len(predictor.class_names), top_k)
  found, refused, shrink = {}, {}, set()
  for i, path in enumerate(files):  # headers only: nothing over the pixel limit is ever decoded
    verdict, reason = screen(path)
    if reason is not None:
      refused[i] = reason
    elif verdict == "shrink":
      shrink.add(i)
  start = last_log = time.monotonic()
  # libjpeg writes its complaints about broken files ("Premature end of JPEG file") straight to stderr.
  with tflite.native_stderr_captured():
    for indices, data, pixels in image_batches([(i, p) for i, p in enumerate(files) if i not in refused],
                                               predictor.image_size, predictor.preprocessing_name, batch_size,
                                               shrink):
      probabilities = predictor.probabilities(data, pixels)
      best = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
      for index, row, classes in zip(indices.numpy(), probabilities, best):
        found[int(index)] = [(int(c), predictor.class_names[c], float(row[c])) for c in classes]
      if time.monotonic() - last_log > PROGRESS_SECS:
        _progress(int(indices.numpy()[-1]) + 1, len(files), start)
        last_log = time.monotonic()
    return [Prediction(path, found[i]) if i in found else
            Prediction(path, [], refused.get(i) or error_message(path, predictor.image_size,
                                                                 predictor.preprocessing_name, i in shrink))
            for i, path in enumerate(files)]


def format_csv(predictions, k):
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["path"] + [f"{name}_{i}" for i in range(1, k + 1) for name in ("label", "probability")] +
                  ["error"])
  for p in predictions:
    cells = [cell for _, label, prob in p.top_k for cell in (label, f"{prob:.6f}")]
    writer.writerow([p.path] + cells + [""] * (2 * k - len(cells)) + [p.error or ""])
  return out.getvalue()


def format_jsonl(predictions):
  return "".join(json.dumps({"path": p.path, "error": p.error, "top_k": [
      {"class_id": c, "label": label, "probability": prob} for c, label, prob in p.top_k]}) + "\n"
                 for p in predictions)


def format_top1(predictions):
  """One line per file: path, top-1 label and probability (or the error), tab-separated."""
  return "".join(f"{p.path}\t{p.top_k[0][1]}\t{p.top_k[0][2]:.4f}\n" if p.top_k else f"{p.path}\terror: {p.error}\n"
                 for p in predictions)


def _output_format(output):
  extension = os.path.splitext(output)[1].lower()
  if extension not in OUTPUT_FORMATS:
    raise errors.BadValue(f"--output={output}: use a file name ending in {' or '.join(OUTPUT_FORMATS)}.")
  return extension


_CSV_HEADER = re.compile(r"path(,label_\d+,probability_\d+)+,error")
_JSONL_KEYS = {"path", "error", "top_k"}


def written_by_predict(output, extension):
  """True when `output` is a file this program wrote: its first line is the header format_csv writes, or a row
  format_jsonl writes (exactly path, error, top_k). Anything else is a file of the user's."""
  try:
    with open(fileio.local_path(output), "rb") if fileio.is_local(output) else tf.io.gfile.GFile(output, "rb") as f:
      first = f.read(1 << 16).split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
  except (OSError, UnicodeDecodeError, tf.errors.OpError):
    return False
  if extension == ".csv":
    return _CSV_HEADER.fullmatch(first) is not None
  try:
    row = json.loads(first)
  except ValueError:
    return False
  return isinstance(row, dict) and set(row) == _JSONL_KEYS


def check_output(output, overwrite=False):
  """--output's format (.csv or .jsonl); an existing file is replaced only if predict wrote it, or with --overwrite."""
  extension = _output_format(output)
  if fileio.isdir(output):
    raise errors.BadValue(f"--output={output} is a directory. Pass a file name ending in "
                          f"{' or '.join(OUTPUT_FORMATS)}.")
  if fileio.exists(output) and not overwrite and not written_by_predict(output, extension):
    raise errors.BadValue(f"--output={output} exists and was not written by predict_image_classifier.py: refusing "
                          "to replace it. Pass another file name, or --overwrite to replace it.")
  return extension


def run(model, paths, *, top_k=None, output=None, batch_size=64, use_ema=False, overwrite=False):
  """Classifies the files under `paths` as the flags say; returns the list of Predictions.

  `top_k`: default 5 (or the number of classes, when fewer); `overwrite`: replace an --output file that
  predict did not write (check_output).
  """
  if (top_k is not None and top_k < 1) or batch_size < 1:
    raise errors.BadValue(f"--top_k={top_k} and --batch_size={batch_size} must both be >= 1.")
  extension = check_output(output, overwrite) if output else None
  files = list_files(paths)
  predictor = load_predictor(model, use_ema=use_ema)
  top_k = serving.resolve_top_k(top_k, len(predictor.class_names))
  logging.info("Classifying %d file(s) with %s", len(files), predictor.what)
  start = time.monotonic()
  predictions = predict(predictor, files, top_k=top_k, batch_size=batch_size)
  secs = time.monotonic() - start
  failed = [p for p in predictions if p.error]
  done = len(predictions) - len(failed)
  if output:
    k = metrics.effective_top_k(len(predictor.class_names), top_k)
    fileio.write_text_atomic(output, format_csv(predictions, k) if extension == ".csv" else format_jsonl(predictions))
  else:
    print(format_top1(predictions), end="", flush=True)
  note = f"; {len(failed)} could not be classified ({'error column' if output else 'error lines'})" if failed else ""
  logging.info("Classified %d of %d files in %.1f s (%.1f images/s)%s%s", done, len(files), secs,
               done / max(secs, 1e-9), note, f". Wrote {output}" if output else "")
  if not done:
    raise NothingClassified(f"None of the {len(files)} file(s) could be classified; e.g. {failed[0].path}: "
                            f"{failed[0].error}")
  return predictions
