r"""The export_image_classifier.py program: a checkpoint -> SavedModel + TFLite models, each verified against it.

    python export_image_classifier.py --checkpoint_path=runs/flowers102/xception/eval_validation/best \
        --output_dir=exports/xception --dataset_dir=data/flowers102
    # Export of runs/flowers102/xception/eval_validation/best/ckpt-N on test (6149 examples):
    # | artifact       | size MB | top-1 % | change (points) | agreement % | max rel logit diff | ms/image ... |
    # | checkpoint     | ...     | ...     |           +0.00 |      100.00 |            0.0e+00 |          n/a |
    # | saved_model    | ...     | ...     |           +0.00 |      100.00 |            ...     | ...          |
    # | tflite_float32 | ... (also tflite_float16, tflite_dynamic, tflite_int8)
    # Files: exports/xception   (saved_model/, model_<quant>.tflite, labels.txt, export.json, export_report.json)

Read top to bottom: which model (the checkpoint's own config, its run's class names) -> the
serving module (preprocessing inside the graph) -> artifacts -> verification -> report.

- The SavedModel (`saved_model/`) needs nothing but TensorFlow: `tf.saved_model.load(dir)` in a
  process that never imports this project. Its signatures (dynamic batch) all return `logits`,
  `probabilities` [N, C] float32, `top_k_classes` int32, `top_k_probabilities`, `top_k_labels` [N, k]:
  `serving_default` (image_bytes: string [N], JPEG/PNG/GIF/BMP/WebP, grayscale and CMYK to RGB),
  `serving_images` (images: uint8 [N, H, W, 3]), `serving_examples` (examples: serialized
  tf.Example with `image/encoded`, as download_and_convert_data.py writes) and `serving_preprocessed`
  (preprocessed_images: float32 [N, S, S, 3], what the TFLite models take). JPEG bytes go through
  `preprocessing.preprocess_eval` (the evaluator's recipe, decoding only the crop), other formats and
  uint8 tensors through `preprocessing.preprocess_eval_image`. A bad image fails the batch with
  "Undecodable image(s) at batch index [i] ...".
- `model_<quant>.tflite` for float32, float16, dynamic (dynamic-range int8 weights) and int8 (uint8 in
  and out, calibrated on the evaluator's preprocessing of --num_calibration_images spread over
  --calibration_split): one input `preprocessed_images` [-1, S, S, 3], one output `logits`.
  export.json says what an app must do around it (preprocessing, dtypes, quantization parameters),
  labels.txt holds `id:name` lines.
- Verification (needs --dataset_dir): every artifact on every example of the split, in file order,
  against the checkpoint's own Keras model on the same preprocessed images: top-1, agreement with the
  checkpoint's top-1, max relative logit difference, and speed on one thread. The SavedModel is
  evaluated through `serving_examples` on the raw records in a fresh Python process that does not see
  this project (which proves it stands alone). A float32 artifact must agree on >= 99.9 % of top-1
  predictions with logits within 1e-4 relative (else it is a bug); a quantized one may lose at most
  --max_accuracy_drop points. Either failure exits non-zero after writing everything.
- Outputs are written into a temporary sibling of --output_dir, renamed when complete, with
  export_manifest.json listing every file written (size, sha256). An earlier export there is replaced:
  its own files (listed, unchanged) go, anything its user added is moved into the new one; a directory
  without that manifest (even with an export.json in it) is refused. export.json and export_report.json
  name the checkpoint relative to its run's parent: no local path is shipped with the model.

The same code serves `predict_image_classifier.py` (predict.py) and the study (`export_run`).
"""
import contextlib
import dataclasses
import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from absl import logging
import numpy as np
import tensorflow as tf

import datasets
import nets
from datasets import records
from slimflowers import checkpoints
from slimflowers import cli
from slimflowers import errors
from slimflowers import exact_eval
from slimflowers import fileio
from slimflowers import input_pipeline
from slimflowers import locks
from slimflowers import metrics
from slimflowers import preprocessing
from slimflowers import run_dir
from slimflowers import sanity
from slimflowers import tta as tta_lib

PROGRAM = "export_image_classifier.py"
FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
SAVED_MODEL_SUBDIR = "saved_model"
LABELS_FILE = records.LABELS_FILENAME
SIGNATURES = ("serving_default", "serving_images", "serving_examples", "serving_preprocessed")
TFLITE_INPUT = "preprocessed_images"
TFLITE_OUTPUT = "logits"
EXPORT_TTA = ("none", "flip")  # test-time augmentation an export may bake in
# A float32 artifact that misses these is a bug (the export must reproduce the checkpoint).
FLOAT32_MIN_AGREEMENT = 0.999
FLOAT32_MAX_RELATIVE_DIFF = 1e-4
TIMING_IMAGES = 32    # preprocessed images kept from the verification pass for the speed columns
LATENCY_IMAGES = 16   # batch-1 calls whose median is the latency
_OVERRIDE_FLAGS = ("dropout_rate", "batch_norm_momentum", "batch_norm_epsilon")
FORMAT_VERSION = 1


class VerificationFailed(errors.UserError, RuntimeError):
  """An exported artifact does not match its checkpoint closely enough; the files and report are kept."""
  exit_code = 1

  def __init__(self, message, report):
    super().__init__(message)
    self.report = report


def tflite_filename(quantization):
  return f"model_{quantization}.tflite"


def artifact_name(quantization=None):
  """Report name of an artifact: `saved_model`, or `tflite_<quant>`."""
  return SAVED_MODEL_SUBDIR if quantization is None else f"tflite_{quantization}"


# ----------------------------------------------------------------------------------------------------------------------
# Which model: the checkpoint's own config, the run's class names


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """Everything needed to rebuild and describe the model a checkpoint holds."""
  prefix: str
  train_dir: str
  model_name: str
  num_classes: int
  overrides: dict
  image_size: int
  preprocessing_name: str
  class_names: tuple


def train_dir_of(prefix):
  """The run directory of a checkpoint: its own directory, or RUN for RUN/eval_SPLIT/best/ckpt-N."""
  directory = os.path.dirname(prefix)
  parent = os.path.dirname(directory)
  if os.path.basename(directory) == run_dir.BEST_SUBDIR and os.path.basename(parent).startswith("eval_"):
    return os.path.dirname(parent)
  return directory


def _flag_value(value):
  return value if isinstance(value, bool) else float(value)


def model_config(prefix, train_dir):
  """The checkpoint's model_config; else (a model-only best/ copy) rebuilt from the run's run_info.json and flags."""
  cfg = checkpoints.read_model_config(prefix)
  if cfg:
    return cfg
  info = run_dir.read_run_info(train_dir)
  if not info.get("model_name") or not info.get("num_classes"):
    raise errors.BadValue(
        f"Checkpoint {prefix} holds no model_config, and {os.path.join(train_dir, run_dir.RUN_INFO)} does not say "
        "which model it is. Export a checkpoint written by train_image_classifier.py (a run directory, "
        "RUN/ckpt-STEP or RUN/eval_validation/best).")
  with errors.as_user_errors():
    spec = nets.get_spec(info["model_name"])
  flags_txt = run_dir.read_flags(train_dir)
  overrides = {k: _flag_value(flags_txt[k]) for k in _OVERRIDE_FLAGS if k in flags_txt}
  return checkpoints.model_config(spec.name, info["num_classes"], overrides,
                                  info.get("image_size") or spec.default_image_size,
                                  info.get("preprocessing_name") or spec.preprocessing)


def dataset_class_names(dataset_dir):
  """Class names of a converted dataset (dataset.json, else labels.txt), or None."""
  meta = records.read_metadata(dataset_dir) or {}
  if meta.get("class_names"):
    return list(meta["class_names"])
  try:
    labels = records.read_labels(dataset_dir)
  except (OSError, ValueError):
    return None
  return [labels[i] for i in sorted(labels)] if sorted(labels) == list(range(len(labels))) else None


def class_names_for(train_dir, num_classes, dataset_dir=None):
  """run_info.json's class_names, else the run's dataset's, else `dataset_dir`'s; numbers with a warning."""
  info = run_dir.read_run_info(train_dir)
  candidates = [(run_dir.RUN_INFO, lambda: info.get("class_names"))]
  for directory in (info.get("dataset_dir"), dataset_dir):
    if directory and fileio.isdir(directory):
      candidates.append((directory, lambda d=directory: dataset_class_names(d)))
  for _, names in candidates:
    names = names()
    if names and len(names) == num_classes:
      return tuple(str(n) for n in names)
  logging.warning("No class names for the %d classes of %s (no class_names in its %s, no dataset with as many "
                  "classes): labels are the class numbers. Pass --dataset_dir to name them.", num_classes,
                  train_dir, run_dir.RUN_INFO)
  return tuple(str(i) for i in range(num_classes))


def resolve_source(checkpoint_path, dataset_dir=None):
  """A ModelSource from a run directory (newest checkpoint), a ckpt-STEP prefix or an eval_*/best directory."""
  prefix = checkpoints.resolve_checkpoint(checkpoint_path)
  train_dir = train_dir_of(prefix)
  cfg = model_config(prefix, train_dir)
  with errors.as_user_errors():
    spec = nets.get_spec(cfg["model_name"])
  return ModelSource(
      prefix=prefix, train_dir=train_dir, model_name=spec.name, num_classes=int(cfg["num_classes"]),
      overrides=dict(cfg.get("overrides") or {}), image_size=int(cfg["image_size"]),
      preprocessing_name=cfg["preprocessing_name"],
      class_names=class_names_for(train_dir, int(cfg["num_classes"]), dataset_dir))


@contextlib.contextmanager
def float32_policy():
  """Builds under the float32 Keras policy (a mixed-precision run exports as float32), then restores the global one."""
  import keras  # pylint: disable=g-import-not-at-top
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("float32")
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def build_model(source, *, use_ema=False):
  """The checkpoint's model in float32, restored as the evaluator restores it. Returns (model, global step)."""
  # The auxiliary head is a training device: serving returns the main logits only.
  overrides = {k: v for k, v in source.overrides.items() if k != "aux_logits"}
  with float32_policy():
    with errors.as_user_errors():
      model = nets.get_model(source.model_name, source.num_classes, **overrides)
  # Built before the restore: a restore into unbuilt layers is deferred and could be skipped silently.
  model(tf.zeros([1, source.image_size, source.image_size, 3]), training=False)
  step = exact_eval.restore(model, source.prefix, use_ema=use_ema)
  return model, step


# ----------------------------------------------------------------------------------------------------------------------
# Preprocessing inside the graph


def preprocess_image_bytes(image_bytes, image_size, preprocessing_name):
  """Encoded image -> the evaluator's float32 [S, S, 3]: JPEG as the evaluator decodes it, other formats as pixels."""
  def jpeg():
    return preprocessing.preprocess_eval(image_bytes, image_size, preprocessing_name)

  def other():
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return preprocessing.preprocess_eval_image(image, image_size, preprocessing_name)

  return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)


def preprocess_batch(image_bytes, image_size, preprocessing_name):
  """string [N] -> float32 [N, S, S, 3]; an undecodable image fails the batch with a message naming its index.

  A plain map would fail with the decoder's message and no index. Here tf.data drops the images that
  fail (ignore_errors), and the indices that did not come through are named in the assertion.
  """
  n = tf.shape(image_bytes, out_type=tf.int64)[0]
  decoded = (tf.data.Dataset.from_tensor_slices(image_bytes).enumerate()
             .map(lambda i, data: (i, preprocess_image_bytes(data, image_size, preprocessing_name)),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
             .ignore_errors().batch(tf.maximum(n, 1)))
  # A sentinel so that an all-bad (or empty) batch still yields one element.
  empty = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int64), tf.zeros([0, image_size, image_size, 3])))
  indices, images = decoded.concatenate(empty).take(1).get_single_element()
  missing = tf.sparse.to_dense(tf.sets.difference(tf.range(n)[None], indices[None]))[0]
  message = tf.strings.format("Undecodable image(s) at batch index {} (batch size {}): not a JPEG, PNG, GIF, BMP or "
                              "WebP image, or truncated.", (missing, n), summarize=-1)
  check = tf.debugging.Assert(tf.equal(tf.size(missing), 0), [message], summarize=-1)
  with tf.control_dependencies([check]):
    return tf.identity(images)


class ServingModule(tf.Module):
  """What the SavedModel holds: the four signatures over one Keras model, preprocessing inside the graph."""

  def __init__(self, model, *, class_names, image_size, preprocessing_name, top_k, tta=tta_lib.NONE):
    super().__init__()
    self.tta = tta  # --tta=flip: every signature (and the TFLite files) average the image's and its mirror's logits
    # The Keras 3 model is hidden from tf.Module's tracking and its raw tf.Variables are tracked instead:
    # tracking the model itself saves fine, but TFLite conversion then keeps VAR_HANDLE ops and the
    # converted model outputs NaN (TF 2.20, checked).
    object.__setattr__(self, "_model", model)
    self.model_variables = [v.value for v in model.variables]
    self._class_names = tf.constant(list(class_names))
    self.image_size, self.preprocessing_name = int(image_size), preprocessing_name
    self.top_k = metrics.effective_top_k(len(class_names), top_k)
    size = self.image_size
    self.serving_default = tf.function(
        self._from_bytes, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    self.serving_images = tf.function(
        self._from_images, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    self.serving_examples = tf.function(
        self._from_examples, input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    self.serving_preprocessed = tf.function(
        self._outputs, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=TFLITE_INPUT)])

  def signatures(self):
    return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}

  def tflite_function(self):
    """serving_preprocessed with the logits only (what a phone app calls; softmax is one line there)."""
    size = self.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=TFLITE_INPUT)])
    def logits(images):
      return {TFLITE_OUTPUT: self._logits(images)}

    return logits.get_concrete_function()

  def _logits(self, images):
    return tf.cast(tta_lib.logits(self._model, images, self.tta), tf.float32)

  def _outputs(self, images):
    logits = self._logits(images)
    probabilities = tf.nn.softmax(logits, axis=-1)
    top_p, top_i = tf.math.top_k(probabilities, k=self.top_k)
    return {"logits": logits, "probabilities": probabilities, "top_k_classes": tf.cast(top_i, tf.int32),
            "top_k_probabilities": top_p, "top_k_labels": tf.gather(self._class_names, top_i)}

  def _from_bytes(self, image_bytes):
    return self._outputs(preprocess_batch(image_bytes, self.image_size, self.preprocessing_name))

  def _from_images(self, images):
    size, name = self.image_size, self.preprocessing_name
    return self._outputs(tf.map_fn(lambda image: preprocessing.preprocess_eval_image(image, size, name), images,
                                   fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32)))

  def _from_examples(self, examples):
    features = tf.io.parse_example(examples, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})
    return self._from_bytes(features["image/encoded"])


# ----------------------------------------------------------------------------------------------------------------------
# Artifacts: SavedModel, TFLite, labels.txt, export.json


@contextlib.contextmanager
def native_stderr_captured():
  """Keeps the TFLite converter's and interpreter's C++ log lines off the console (shown with --verbosity=1).

  They are written to file descriptor 2 directly, past Python's logging; on an error they are replayed.
  """
  if cli.VERBOSE:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    except BaseException:
      os.dup2(saved, 2)
      captured.seek(0)
      sys.stderr.write(captured.read().decode("utf-8", "replace")[-5000:])
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def save_saved_model(module, directory):
  tf.saved_model.save(module, directory, signatures=module.signatures())


def convert_tflite(module, quantization, calibration=None):
  """The TFLite flatbuffer of `module.tflite_function()`; `calibration()` yields float32 [S, S, 3] images (int8)."""
  converter = tf.lite.TFLiteConverter.from_concrete_functions([module.tflite_function()], module)
  if quantization != "float32":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == "float16":
    converter.target_spec.supported_types = [tf.float16]
  elif quantization == "int8":
    # Full integer (Model Garden's int8_full, TF-Slim's post_training_quantization): uint8 in and out.
    converter.representative_dataset = lambda: ([image[None]] for image in calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
  with native_stderr_captured():
    return converter.convert()


def _tensor_description(details):
  """One TFLite input/output for export.json: name, dtype, shape and (integer tensors) quantization."""
  out = {"dtype": np.dtype(details["dtype"]).name, "shape": [int(d) for d in details["shape_signature"]]}
  if np.issubdtype(details["dtype"], np.integer):
    scale, zero_point = details["quantization"]
    out["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
  return out


class TFLiteModel:
  """A .tflite classifier run with LiteRT: float32 preprocessed images in, float32 logits out (any batch).

  Quantized inputs and outputs are converted with the model's own parameters:
  q = round(x / scale + zero_point) clipped to the dtype, x = (q - zero_point) * scale.
  """

  def __init__(self, model_path=None, model_content=None, num_threads=1):
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    with native_stderr_captured():
      self.interpreter = Interpreter(model_path=model_path, model_content=model_content, num_threads=num_threads)
      self.signature, = self.interpreter.get_signature_list()
      self.runner = self.interpreter.get_signature_runner(self.signature)
    (self.input_name, self.input_details), = self.runner.get_input_details().items()
    (self.output_name, self.output_details), = self.runner.get_output_details().items()
    self._called = False

  def describe(self):
    return {"signature": self.signature, "input": {"name": self.input_name, **_tensor_description(
        self.input_details)}, "output": {"name": self.output_name, **_tensor_description(self.output_details)}}

  def logits(self, images):
    x = np.asarray(images, np.float32)
    dtype = self.input_details["dtype"]
    if np.issubdtype(dtype, np.integer):
      scale, zero_point = self.input_details["quantization"]
      info = np.iinfo(dtype)
      x = np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)
    if self._called:
      y = self.runner(**{self.input_name: x})[self.output_name]
    else:
      with native_stderr_captured():  # the first call creates the XNNPACK delegate, which says so on stderr
        y = self.runner(**{self.input_name: x})[self.output_name]
      self._called = True
    if np.issubdtype(y.dtype, np.integer):
      scale, zero_point = self.output_details["quantization"]
      return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return y.astype(np.float32)


def labels_text(class_names):
  return "".join(f"{i}:{name}\n" for i, name in enumerate(class_names))


def _saved_model_description(module, num_classes):
  outputs = {"logits": f"float32 [N, {num_classes}]", "probabilities": f"float32 [N, {num_classes}]",
             "top_k_classes": f"int32 [N, {module.top_k}]", "top_k_probabilities": f"float32 [N, {module.top_k}]",
             "top_k_labels": f"string [N, {module.top_k}]"}
  size = module.image_size
  return {"directory": SAVED_MODEL_SUBDIR, "outputs": outputs, "signatures": {
      "serving_default": {"image_bytes": "string [N]: JPEG, PNG, GIF, BMP or WebP file contents"},
      "serving_images": {"images": "uint8 [N, H, W, 3] RGB"},
      "serving_examples": {"examples": "string [N]: serialized tf.Example with image/encoded"},
      "serving_preprocessed": {TFLITE_INPUT: f"float32 [N, {size}, {size}, 3], preprocessed as 'preprocessing' says"},
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
  tflite = {}
  for quantization, model in tflite_models.items():
    tflite[quantization] = {"file": tflite_filename(quantization), **model.describe()}
  steps = ["Preprocess the RGB photo as 'preprocessing' says (float32 NHWC).",
           "int8 models: quantize the input, q = round(x / scale + zero_point) clipped to [0, 255] (uint8), and "
           "dequantize the output, logits = (q - zero_point) * scale, with the 'quantization' parameters.",
           "probabilities = softmax(logits); class i is line i of the labels file ('i:name')."]
  return {
      "format_version": FORMAT_VERSION, "model_name": source.model_name, "num_classes": source.num_classes,
      "image_size": source.image_size, "preprocessing_name": source.preprocessing_name,
      "preprocessing": preprocessing.describe(source.preprocessing_name, source.image_size),
      "labels_file": LABELS_FILE, "checkpoint": shipped_checkpoint_name(source), "step": int(step),
      "use_ema": bool(use_ema),
      "tta": module.tta,
      "top_k": module.top_k,
      "saved_model": _saved_model_description(module, source.num_classes) if saved_model else None,
      "tflite": tflite, "tflite_app_steps": steps,
  }


def read_export_json(export_dir):
  path = os.path.join(export_dir, run_dir.EXPORT_JSON)
  description = fileio.read_json(path)
  if not description:
    raise errors.NotFound(f"{export_dir} has no {run_dir.EXPORT_JSON}: not a directory written by "
                          "export_image_classifier.py. Export the model with it first.")
  return description


def read_class_names(export_dir, description):
  labels = records.read_labels(export_dir) if fileio.exists(os.path.join(export_dir, LABELS_FILE)) else {}
  return tuple(labels.get(i, str(i)) for i in range(int(description["num_classes"])))


# ----------------------------------------------------------------------------------------------------------------------
# Data: calibration and verification splits


@dataclasses.dataclass(frozen=True)
class Splits:
  verify: object        # datasets.DatasetSplit
  calibration: object   # datasets.DatasetSplit or None


def dataset_splits(dataset_dir, num_classes, *, verify_split=None, calibration_split=None):
  """The verification split (default: test if the dataset has one, else validation) and the calibration split."""
  meta = records.read_metadata(dataset_dir) if fileio.isdir(dataset_dir) else None
  if meta is None:
    raise errors.NotFound(f"--dataset_dir={dataset_dir} holds no converted dataset (no valid "
                          f"{records.DATASET_JSON}). Pass the directory written by download_and_convert_data.py.")
  verify_split = verify_split or ("test" if "test" in meta["splits"] else "validation")
  verify = datasets.get_split(meta["name"], verify_split, dataset_dir)
  if verify.num_classes != num_classes:
    raise errors.BadValue(f"--dataset_dir={dataset_dir} has {verify.num_classes} classes but the checkpoint "
                          f"classifies {num_classes}: pass the dataset the run was trained on.")
  calibration = datasets.get_split(meta["name"], calibration_split, dataset_dir) if calibration_split else None
  return Splits(verify=verify, calibration=calibration)


def _examples(split, image_size, preprocessing_name, batch_size=32):
  """(image, label) of every real example in file order, through the evaluator's own input pipeline."""
  ds = input_pipeline.eval_dataset(split, batch_size=batch_size, image_size=image_size,
                                   preprocessing_name=preprocessing_name).unbatch()
  return ds.filter(lambda e: e["mask"] > 0).map(lambda e: (e["image"], e["label"]))


def calibration_images(split, count, image_size, preprocessing_name):
  """A function yielding `count` preprocessed images spread evenly over the split (every k-th record)."""
  stride = max(1, split.num_samples // count)
  ds = _examples(split, image_size, preprocessing_name).enumerate().filter(lambda i, _: i % stride == 0)
  ds = ds.map(lambda _, example: example[0]).take(count)
  return ds.as_numpy_iterator


# ----------------------------------------------------------------------------------------------------------------------
# Verification


def time_model(fn, images, batch_size):
  """(median ms/image over batch-1 calls, images/s over `images` in batches of `batch_size`); warm-ups excluded.

  Also run, as source, inside the SavedModel probe: one timing code for every artifact.
  """
  fn(images[:1])
  latencies = []
  for image in images[:LATENCY_IMAGES]:
    start = time.perf_counter()
    fn(image[None])
    latencies.append(time.perf_counter() - start)
  fn(images[:batch_size])
  start = time.perf_counter()
  for begin in range(0, len(images), batch_size):
    fn(images[begin:begin + batch_size])
  return 1000.0 * float(np.median(latencies)), len(images) / max(time.perf_counter() - start, 1e-9)


# Evaluates the SavedModel in a fresh process that imports only TensorFlow and numpy (sys.path without this
# project): through serving_examples on the split's raw records, then times serving_preprocessed on one thread.
_PROBE = """
import json, sys, time
import numpy as np
import tensorflow as tf

LATENCY_IMAGES = {latency_images}
{time_model}

def main(args):
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  loaded = tf.saved_model.load(args["saved_model"])
  examples = loaded.signatures["serving_examples"]
  batches = tf.data.TFRecordDataset(args["files"]).take(args["num_examples"]).batch(args["batch_size"])
  logits = [examples(examples=batch)["logits"].numpy() for batch in batches]
  preprocessed = loaded.signatures["serving_preprocessed"]
  run = lambda x: preprocessed({input_name}=tf.constant(x))
  latency_ms, images_per_sec = time_model(run, np.load(args["timing_images"]), args["batch_size"])
  project = sorted(m for m in ("slimflowers", "nets", "datasets") if m in sys.modules)
  np.savez(args["output"], logits=np.concatenate(logits), latency_ms=latency_ms, images_per_sec=images_per_sec,
           project_modules=np.array(project, dtype=str))

main(json.loads(sys.argv[1]))
"""


def saved_model_probe_code():
  return _PROBE.format(latency_images=LATENCY_IMAGES, time_model=inspect.getsource(time_model),
                       input_name=TFLITE_INPUT)


def probe_saved_model(saved_model_dir, split, timing_images, batch_size):
  """Runs the probe (see _PROBE) in a fresh Python; returns (logits [N, C], latency ms, images/s)."""
  with tempfile.TemporaryDirectory(prefix="slimflowers_probe_") as work:
    np.save(os.path.join(work, "timing.npy"), timing_images)
    args = {"saved_model": fileio.abspath(saved_model_dir), "files": list(split.filenames),
            "num_examples": split.num_samples, "batch_size": batch_size,
            "timing_images": os.path.join(work, "timing.npy"), "output": os.path.join(work, "out.npz")}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.run([sys.executable, "-c", saved_model_probe_code(), json.dumps(args)], cwd=work, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
      raise RuntimeError(f"The SavedModel in {saved_model_dir} failed in a fresh TensorFlow process (a bug in the "
                         f"export):\n{proc.stderr[-3000:]}")
    out = np.load(args["output"])
    if out["project_modules"].size:
      raise RuntimeError(f"The SavedModel probe imported project modules {list(out['project_modules'])}: the "
                         "SavedModel must load without them.")
    return out["logits"], float(out["latency_ms"]), float(out["images_per_sec"])


@dataclasses.dataclass
class ReferencePass:
  """The checkpoint's Keras model on every example of the split, plus what each TFLite model said."""
  labels: np.ndarray
  logits: np.ndarray
  tflite_logits: dict     # quantization -> [N, C]
  timing_images: np.ndarray


def reference_pass(model, tflite_models, split, image_size, preprocessing_name, batch_size, tta=tta_lib.NONE):
  """One pass over the split: preprocess once, run the Keras model and every TFLite model on the same images."""
  forward = tf.function(lambda x: tf.cast(tta_lib.logits(model, x, tta), tf.float32),
                        reduce_retracing=True)
  labels, logits, timing = [], [], []
  tflite_logits = {q: [] for q in tflite_models}
  last_log, done = time.monotonic(), 0
  for images, batch_labels in _examples(split, image_size, preprocessing_name, batch_size).batch(batch_size):
    images = images.numpy()
    labels.append(batch_labels.numpy())
    logits.append(forward(images).numpy())
    for quantization, tflite_model in tflite_models.items():
      tflite_logits[quantization].append(tflite_model.logits(images))
    if sum(len(t) for t in timing) < TIMING_IMAGES:
      timing.append(images[:TIMING_IMAGES - sum(len(t) for t in timing)])
    done += len(images)
    if time.monotonic() - last_log > 30:
      logging.info("Verifying on %s: %d/%d examples", split.split_name, done, split.num_samples)
      last_log = time.monotonic()
  if done != split.num_samples:
    raise RuntimeError(f"Verification read {done} examples but split {split.split_name} has {split.num_samples}.")
  return ReferencePass(labels=np.concatenate(labels), logits=np.concatenate(logits),
                       tflite_logits={q: np.concatenate(v) for q, v in tflite_logits.items()},
                       timing_images=np.concatenate(timing))


def max_relative_difference(logits, reference):
  """max over examples of max|logits - reference| / max|reference| (each example's largest logit as the scale)."""
  scale = np.maximum(np.abs(reference).max(axis=1), 1e-12)
  return float((np.abs(logits - reference).max(axis=1) / scale).max())


def accuracy_of(logits, labels, num_classes):
  """metrics.summarize of `logits` on `labels`: the evaluator's exact counts, all examples at once."""
  totals = metrics.Totals(num_classes)
  totals.add(metrics.batch_counts(logits, labels, np.ones(len(labels), np.float32), num_classes))
  return totals.result()


def artifact_row(artifact, *, quantization, file, size_bytes, logits=None, reference=None, labels=None,
                 num_classes=None, reference_top1=None, latency_ms=None, images_per_sec=None):
  """One line of the report; the metric fields are None when there was nothing to verify against."""
  row = {"artifact": artifact, "quantization": quantization, "file": file, "size_mb": size_bytes / 1e6,
         "top1": None, "top5": None, "change_points": None, "agreement": None, "max_relative_logit_difference": None,
         "latency_ms": latency_ms, "images_per_sec": images_per_sec}
  if logits is not None:
    result = accuracy_of(logits, labels, num_classes)
    row.update(top1=result["accuracy"], top5=result["top_5_accuracy"],
               change_points=100.0 * (result["accuracy"] - (reference_top1 if reference_top1 is not None
                                                            else result["accuracy"])),
               agreement=float(np.mean(logits.argmax(axis=1) == reference.argmax(axis=1))),
               max_relative_logit_difference=max_relative_difference(logits, reference))
  return row


def verification_failures(rows, max_accuracy_drop):
  """Messages for the rows that fail: float32 ones that do not reproduce the checkpoint, quantized ones that drop."""
  failures = []
  for row in rows:
    if row["artifact"] == "checkpoint" or row["top1"] is None:
      continue
    if row["quantization"] == "float32":
      if row["agreement"] < FLOAT32_MIN_AGREEMENT or row["max_relative_logit_difference"] > FLOAT32_MAX_RELATIVE_DIFF:
        failures.append(
            f"{row['artifact']} ({row['file']}) does not reproduce the checkpoint: top-1 agreement "
            f"{100 * row['agreement']:.2f} % (needs >= {100 * FLOAT32_MIN_AGREEMENT:.1f} %), max relative logit "
            f"difference {row['max_relative_logit_difference']:.2e} (needs <= {FLOAT32_MAX_RELATIVE_DIFF:g}). A "
            f"float32 export must match its checkpoint: this is a bug; report it with {run_dir.EXPORT_REPORT}.")
    elif -row["change_points"] > max_accuracy_drop:
      failures.append(
          f"{row['artifact']} ({row['file']}) loses {-row['change_points']:.2f} points of top-1 accuracy against the "
          f"checkpoint, more than --max_accuracy_drop={max_accuracy_drop:g}. The file is kept: ship a float variant, "
          "calibrate on more images (--num_calibration_images), or accept the drop with a higher --max_accuracy_drop.")
  return failures


def summary_of(rows, split_name):
  """The figures the study's comparison table shows (slimflowers/compare.py)."""
  by_name = {r["artifact"]: r for r in rows}
  int8 = by_name.get(artifact_name("int8"), {})
  latency_row = next((by_name[n] for n in (artifact_name("int8"), artifact_name("float32"), SAVED_MODEL_SUBDIR)
                      if by_name.get(n, {}).get("latency_ms") is not None), {})
  return {"verify_split": split_name,
          "saved_model_mb": by_name.get(SAVED_MODEL_SUBDIR, {}).get("size_mb"), "tflite_int8_mb": int8.get("size_mb"),
          "int8_top1": int8.get("top1"), "cpu_latency_ms": latency_row.get("latency_ms"),
          "latency_artifact": latency_row.get("artifact")}


# ----------------------------------------------------------------------------------------------------------------------
# The report table


def _cell(value, fmt):
  return "n/a" if value is None else fmt(value)


TABLE_COLUMNS = (
    ("artifact", "artifact", str),
    ("size_mb", "size MB", "{:.2f}".format),
    ("top1", "top-1 %", lambda v: f"{100 * v:.2f}"),
    ("change_points", "change (points)", "{:+.2f}".format),
    ("agreement", "agreement %", lambda v: f"{100 * v:.2f}"),
    ("max_relative_logit_difference", "max rel logit diff", "{:.1e}".format),
    ("latency_ms", "ms/image (batch 1, 1 thread)", "{:.2f}".format),
    ("images_per_sec", "images/s (batched, 1 thread)", "{:.1f}".format),
)


def format_table(rows):
  header = [h for _, h, _ in TABLE_COLUMNS]
  body = [[_cell(row.get(key), fmt) for key, _, fmt in TABLE_COLUMNS] for row in rows]
  widths = [max(len(c) for c in column) for column in zip(header, *body)]

  def line(cells):
    return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"

  return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(b) for b in body])


# ----------------------------------------------------------------------------------------------------------------------
# The program


def resolve_top_k(top_k, num_classes):
  """--top_k: unset, metrics.TOP_K (5) or the number of classes when fewer; a larger k asked for is clamped to
  the number of classes, and the log says so."""
  if top_k is None:
    return metrics.effective_top_k(num_classes)
  if top_k > num_classes:
    logging.warning("--top_k=%d exceeds the model's %d classes: the top-k outputs hold %d.", top_k, num_classes,
                    num_classes)
  return metrics.effective_top_k(num_classes, top_k)


def _check_options(formats, quantize, top_k, max_accuracy_drop, num_calibration_images, batch_size):
  formats, quantize = tuple(formats), tuple(quantize)
  for name, values, allowed in (("formats", formats, FORMATS), ("quantize", quantize, QUANTIZATIONS)):
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
      raise errors.BadValue(f"--{name}={','.join(values)}: {'unknown ' + ', '.join(unknown) if unknown else 'empty'}. "
                            f"Use a comma-separated subset of {','.join(allowed)}.")
  for name, value, low in (("top_k", 1 if top_k is None else top_k, 1),
                           ("num_calibration_images", num_calibration_images, 1),
                           ("batch_size", batch_size, 1), ("max_accuracy_drop", max_accuracy_drop, 0)):
    if value < low:
      raise errors.BadValue(f"--{name}={value} must be >= {low}.")
  return formats, (quantize if "tflite" in formats else ())


# ----------------------------------------------------------------------------------------------------------------------
# The output directory: only the export's own files are ever replaced


def _all_names():
  """Every top-level name an export can write."""
  return ({SAVED_MODEL_SUBDIR, LABELS_FILE, run_dir.EXPORT_JSON, run_dir.EXPORT_REPORT, run_dir.EXPORT_MANIFEST}
          | {tflite_filename(q) for q in QUANTIZATIONS})


def _written_names(formats, quantize):
  """The top-level names an export with these options writes."""
  names = {LABELS_FILE, run_dir.EXPORT_JSON, run_dir.EXPORT_REPORT, run_dir.EXPORT_MANIFEST}
  return names | ({SAVED_MODEL_SUBDIR} if "saved_model" in formats else set()) | {tflite_filename(q) for q in quantize}


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


def _directory_bytes(directory):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(directory) for f in files)


def export_run(checkpoint_path, output_dir, *, dataset_dir=None, formats=FORMATS, quantize=("float32", "int8"),
               verify_split=None, calibration_split="train", num_calibration_images=300, use_ema=False, top_k=None,
               max_accuracy_drop=2.0, batch_size=32, overwrite=False, tta=tta_lib.NONE):
  """Exports and verifies one checkpoint (see the module doc). Returns the report (also in export_report.json).

  `tta="flip"` bakes flip test-time augmentation into every signature and TFLite file (slimflowers/tta.py).

  `overwrite`: replace files of the user's in output_dir at paths the export writes (check_output_dir).

  Raises VerificationFailed (after writing everything) when an artifact misses its bound.
  """
  formats, quantize = _check_options(formats, quantize, top_k, max_accuracy_drop, num_calibration_images, batch_size)
  if tta not in EXPORT_TTA:
    raise errors.BadValue(f"--tta={tta}: the export bakes in {' or '.join(EXPORT_TTA)} (crops would run the net 10 "
                          "times per served image).")
  existing = check_output_dir(output_dir, formats, quantize, overwrite)  # refuse now, not after the conversions
  # ---------------- Which model, which data ----------------
  source = resolve_source(checkpoint_path, dataset_dir)
  skipped = []
  splits = None
  if dataset_dir:
    splits = dataset_splits(dataset_dir, source.num_classes, verify_split=verify_split,
                            calibration_split=calibration_split if "int8" in quantize else None)
  else:
    if "int8" in quantize:
      skipped.append("int8: skipped, it needs calibration images: pass --dataset_dir (and --calibration_split).")
      quantize = tuple(q for q in quantize if q != "int8")
    skipped.append("verification: skipped, no --dataset_dir. The artifacts are NOT checked against the checkpoint; "
                   "pass --dataset_dir to measure them.")
  for message in skipped:
    logging.warning("%s", message)
  top_k = resolve_top_k(top_k, source.num_classes)
  model, step = build_model(source, use_ema=use_ema)
  module = ServingModule(model, class_names=source.class_names, image_size=source.image_size,
                         preprocessing_name=source.preprocessing_name, top_k=top_k, tta=tta)
  logging.info("Exporting %s (%d classes, %d px, %s preprocessing) from %s (step %d%s) to %s", source.model_name,
               source.num_classes, source.image_size, source.preprocessing_name, source.prefix, step,
               ", EMA weights" if use_ema else "", output_dir)

  remove_leftovers(output_dir)
  with staging_dir(output_dir, existing, overwrite) as tmp:
    # ---------------- Artifacts ----------------
    tflite_models = {}
    if "saved_model" in formats:
      start = time.perf_counter()
      save_saved_model(module, os.path.join(tmp, SAVED_MODEL_SUBDIR))
      logging.info("SavedModel written (%.1f s)", time.perf_counter() - start)
    for quantization in quantize:
      start = time.perf_counter()
      calibration = calibration_images(splits.calibration, num_calibration_images, source.image_size,
                                       source.preprocessing_name) if quantization == "int8" else None
      content = convert_tflite(module, quantization, calibration)
      fileio.write_bytes_atomic(os.path.join(tmp, tflite_filename(quantization)), content)
      tflite_models[quantization] = TFLiteModel(model_content=content)
      logging.info("%s written (%.1f s)", tflite_filename(quantization), time.perf_counter() - start)
    fileio.write_text_atomic(os.path.join(tmp, LABELS_FILE), labels_text(source.class_names))
    fileio.write_json_atomic(os.path.join(tmp, run_dir.EXPORT_JSON), export_description(
        source, step=step, use_ema=use_ema, module=module, tflite_models=tflite_models,
        saved_model="saved_model" in formats))

    # ---------------- Verification ----------------
    rows = verify(tmp, model, tflite_models, source, splits.verify if splits else None, batch_size,
                  saved_model="saved_model" in formats, tta=tta)
    failures = verification_failures(rows, max_accuracy_drop)
    report = {"format_version": FORMAT_VERSION, "checkpoint": shipped_checkpoint_name(source), "step": int(step),
              "use_ema": bool(use_ema), "model_name": source.model_name, "num_classes": source.num_classes,
              "image_size": source.image_size, "preprocessing_name": source.preprocessing_name,
              "verify_split": splits.verify.split_name if splits else None,
              "num_examples": splits.verify.num_samples if splits else None,
              "calibration_split": calibration_split if "int8" in quantize else None,
              "num_calibration_images": num_calibration_images if "int8" in quantize else None,
              "max_accuracy_drop": max_accuracy_drop, "artifacts": rows, "failures": failures, "skipped": skipped,
              "summary": summary_of(rows, splits.verify.split_name if splits else None)}
    fileio.write_json_atomic(os.path.join(tmp, run_dir.EXPORT_REPORT), report)

  # ---------------- Report ----------------
  where = f" on {report['verify_split']} ({report['num_examples']} examples)" if splits else " (not verified)"
  print(f"Export of {source.prefix}{where}:\n{format_table(rows)}\nFiles: {output_dir}", flush=True)
  if sanity.is_suspect(rows[0].get("sanity")):
    logging.warning("THIS EXPORTED MODEL DOES NOT WORK: %s", sanity.warning(rows[0]["sanity"], step=step,
                                                                           split=report["verify_split"]))
  if failures:
    raise VerificationFailed("\n".join(failures), report)
  return report


def verify(export_dir, model, tflite_models, source, split, batch_size, *, saved_model, tta=tta_lib.NONE):
  """The report's rows: the checkpoint, the SavedModel and each TFLite model (metrics only with a split)."""
  files = {q: tflite_filename(q) for q in tflite_models}
  prefix_bytes = sum(fileio.size(p) for p in checkpoints.checkpoint_files(source.prefix))
  saved_model_dir = os.path.join(export_dir, SAVED_MODEL_SUBDIR)
  if split is None:
    rows = [artifact_row("checkpoint", quantization=None, file=shipped_checkpoint_name(source),
                         size_bytes=prefix_bytes)]
    if saved_model:
      rows.append(artifact_row(SAVED_MODEL_SUBDIR, quantization="float32", file=SAVED_MODEL_SUBDIR,
                               size_bytes=_directory_bytes(saved_model_dir)))
    return rows + [artifact_row(artifact_name(q), quantization=q, file=f,
                                size_bytes=fileio.size(os.path.join(export_dir, f))) for q, f in files.items()]
  start = time.perf_counter()
  ref = reference_pass(model, tflite_models, split, source.image_size, source.preprocessing_name, batch_size,
                       tta=tta)
  common = {"reference": ref.logits, "labels": ref.labels, "num_classes": source.num_classes}
  checkpoint = artifact_row("checkpoint", quantization=None, file=shipped_checkpoint_name(source),
                            size_bytes=prefix_bytes, logits=ref.logits, **common)
  checkpoint["sanity"] = sanity.assess(  # is the checkpoint learning at all? (slimflowers/sanity.py)
      metrics.numpy_metrics(ref.logits, ref.labels)["confusion_matrix"], exact_eval.read_train_accuracy(source.prefix))
  rows = [checkpoint]
  top1 = checkpoint["top1"]
  if saved_model:
    logits, latency, rate = probe_saved_model(saved_model_dir, split, ref.timing_images, batch_size)
    rows.append(artifact_row(SAVED_MODEL_SUBDIR, quantization="float32", file=SAVED_MODEL_SUBDIR,
                             size_bytes=_directory_bytes(saved_model_dir), logits=logits, reference_top1=top1,
                             latency_ms=latency, images_per_sec=rate, **common))
  for quantization, file in files.items():
    timed = TFLiteModel(model_path=os.path.join(export_dir, file), num_threads=1)
    latency, rate = time_model(timed.logits, ref.timing_images, batch_size)
    rows.append(artifact_row(artifact_name(quantization), quantization=quantization, file=file,
                             size_bytes=fileio.size(os.path.join(export_dir, file)),
                             logits=ref.tflite_logits[quantization], reference_top1=top1, latency_ms=latency,
                             images_per_sec=rate, **common))
  logging.info("Verified %d artifact(s) on %s (%d examples) in %.1f s", len(rows) - 1, split.split_name,
               split.num_samples, time.perf_counter() - start)
  return rows
