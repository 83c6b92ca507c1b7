"""Verification of an export: every artifact on every example of a split against the checkpoint, and its table.

    rows = verification.verify(export_dir, model, tflite_models, source, split, batch_size, saved_model=True)
    print(verification.format_table(rows))

Each artifact runs on the same preprocessed images as the checkpoint's own Keras model: top-1, agreement with
the checkpoint's top-1, max relative logit difference, and speed on one thread. The SavedModel is evaluated
through `serving_examples` on the raw records in a fresh Python process that does not see this project (which
proves it stands alone). A float32 artifact must agree on >= 99.9 % of top-1 predictions with logits within
1e-4 relative (else it is a bug); a quantized one may lose at most --max_accuracy_drop points.
"""
import dataclasses
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import logging
import numpy as np
import tensorflow as tf

import datasets
from datasets import records
from slimflowers.core import checkpoints
from slimflowers.core import cli
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.data import input_pipeline
from slimflowers.deploy import export_files
from slimflowers.deploy import serving
from slimflowers.deploy import tflite
from slimflowers.eval import exact as exact_eval
from slimflowers.eval import metrics
from slimflowers.eval import sanity

# A float32 artifact that misses these is a bug (the export must reproduce the checkpoint).
FLOAT32_MIN_AGREEMENT = 0.999


FLOAT32_MAX_RELATIVE_DIFF = 1e-4


TIMING_IMAGES = 32    # preprocessed images kept from the verification pass for the speed columns


LATENCY_IMAGES = 16   # batch-1 calls whose median is the latency


class VerificationFailed(errors.UserError, RuntimeError):
  """An exported artifact does not match its checkpoint closely enough; the files and report are kept."""
  exit_code = 1

  def __init__(self, message, report):
    super().__init__(message)
    self.report = report


def artifact_name(quantization=None):
  """Report name of an artifact: `saved_model`, or `tflite_<quant>`."""
  return serving.SAVED_MODEL_SUBDIR if quantization is None else f"tflite_{quantization}"


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
                       input_name=serving.TFLITE_INPUT)


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


def reference_pass(model, tflite_models, split, image_size, preprocessing_name, batch_size):
  """One pass over the split: preprocess once, run the Keras model and every TFLite model on the same images."""
  forward = tf.function(lambda x: exact_eval.inference_logits(model, x),
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
  """The figures the study's comparison table shows (slimflowers/study/compare.py)."""
  by_name = {r["artifact"]: r for r in rows}
  int8 = by_name.get(artifact_name("int8"), {})
  candidates = (artifact_name("int8"), artifact_name("float32"), serving.SAVED_MODEL_SUBDIR)
  latency_row = next((by_name[n] for n in candidates
                      if by_name.get(n, {}).get("latency_ms") is not None), {})
  return {"verify_split": split_name,
          "saved_model_mb": by_name.get(serving.SAVED_MODEL_SUBDIR, {}).get("size_mb"),
          "tflite_int8_mb": int8.get("size_mb"),
          "int8_top1": int8.get("top1"), "cpu_latency_ms": latency_row.get("latency_ms"),
          "latency_artifact": latency_row.get("artifact")}


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
  """The export's table in Markdown (cli.markdown_table): the artifact's name, then right-aligned numbers."""
  body = [[_cell(row.get(key), fmt) for key, _, fmt in TABLE_COLUMNS] for row in rows]
  return cli.markdown_table([h for _, h, _ in TABLE_COLUMNS], body, [i > 0 for i in range(len(TABLE_COLUMNS))])


def verify(directory, model, tflite_models, source, split, batch_size, *, saved_model):
  """The report's rows: the checkpoint, the SavedModel and each TFLite model (metrics only with a split)."""
  files = {q: tflite.tflite_filename(q) for q in tflite_models}
  prefix_bytes = sum(fileio.size(p) for p in checkpoints.checkpoint_files(source.prefix))
  saved_model_dir = os.path.join(directory, serving.SAVED_MODEL_SUBDIR)
  if split is None:
    rows = [artifact_row("checkpoint", quantization=None, file=export_files.shipped_checkpoint_name(source),
                         size_bytes=prefix_bytes)]
    if saved_model:
      rows.append(artifact_row(serving.SAVED_MODEL_SUBDIR, quantization="float32", file=serving.SAVED_MODEL_SUBDIR,
                               size_bytes=export_files.directory_bytes(saved_model_dir)))
    return rows + [artifact_row(artifact_name(q), quantization=q, file=f,
                                size_bytes=fileio.size(os.path.join(directory, f))) for q, f in files.items()]
  start = time.perf_counter()
  ref = reference_pass(model, tflite_models, split, source.image_size, source.preprocessing_name, batch_size)
  common = {"reference": ref.logits, "labels": ref.labels, "num_classes": source.num_classes}
  checkpoint = artifact_row("checkpoint", quantization=None, file=export_files.shipped_checkpoint_name(source),
                            size_bytes=prefix_bytes, logits=ref.logits, **common)
  checkpoint["sanity"] = sanity.assess(  # is the checkpoint learning at all? (slimflowers/eval/sanity.py)
      metrics.numpy_metrics(ref.logits, ref.labels)["confusion_matrix"], exact_eval.read_train_accuracy(source.prefix))
  rows = [checkpoint]
  top1 = checkpoint["top1"]
  if saved_model:
    logits, latency, rate = probe_saved_model(saved_model_dir, split, ref.timing_images, batch_size)
    rows.append(artifact_row(serving.SAVED_MODEL_SUBDIR, quantization="float32", file=serving.SAVED_MODEL_SUBDIR,
                             size_bytes=export_files.directory_bytes(saved_model_dir), logits=logits,
                             reference_top1=top1, latency_ms=latency, images_per_sec=rate, **common))
  for quantization, file in files.items():
    timed = tflite.TFLiteModel(model_path=os.path.join(directory, file), num_threads=1)
    latency, rate = time_model(timed.logits, ref.timing_images, batch_size)
    rows.append(artifact_row(artifact_name(quantization), quantization=quantization, file=file,
                             size_bytes=fileio.size(os.path.join(directory, file)),
                             logits=ref.tflite_logits[quantization], reference_top1=top1, latency_ms=latency,
                             images_per_sec=rate, **common))
  logging.info("Verified %d artifact(s) on %s (%d examples) in %.1f s", len(rows) - 1, split.split_name,
               split.num_samples, time.perf_counter() - start)
  return rows
