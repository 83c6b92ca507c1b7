r"""The export_image_classifier.py program: a checkpoint -> SavedModel + TFLite models, each verified against it.

    python export_image_classifier.py --checkpoint_path=runs/flowers102/xception/eval_validation/best \
        --output_dir=exports/xception --dataset_dir=data/flowers102
    # Export of runs/flowers102/xception/eval_validation/best/ckpt-N on test (6149 examples):
    # | artifact       | size MB | top-1 % | change (points) | agreement % | max rel logit diff | ms/image ... |
    # | checkpoint     | ...     | ...     |           +0.00 |      100.00 |            0.0e+00 |          n/a |
    # | saved_model    | ...     | ...     |           +0.00 |      100.00 |            ...     | ...          |
    # | tflite_float32 | ... (also tflite_float16, tflite_dynamic, tflite_int8)
    # Files: exports/xception   (saved_model/, model_<quant>.tflite, labels.txt, export.json, export_report.json)

The program, read top to bottom: which model (`eval.model_source`: the checkpoint's own config, its run's
class names) -> the serving module (`serving`: preprocessing inside the graph) -> the TFLite models (`tflite`) ->
labels.txt and export.json (`export_dir`) -> verification and its table (`verification`) -> export_report.json,
all written into a staging directory that becomes --output_dir when complete (`export_dir`).

- The SavedModel (`saved_model/`) needs nothing but TensorFlow: `tf.saved_model.load(dir)` in a process that
  never imports this project (its signatures: slimflowers/deploy/serving.py).
- `model_<quant>.tflite` for float32, float16, dynamic (dynamic-range int8 weights) and int8 (uint8 in and out,
  calibrated on the evaluator's preprocessing of --num_calibration_images spread over --calibration_split): one
  input `preprocessed_images` [-1, S, S, 3], one output `logits`. export.json says what an app must do around it
  (preprocessing, dtypes, quantization parameters), labels.txt holds `id:name` lines.
- Verification (needs --dataset_dir; slimflowers/deploy/verification.py): a float32 artifact that does not
  reproduce the checkpoint, or a quantized one that loses more than --max_accuracy_drop points, exits non-zero
  after writing everything.

The same code serves `predict_image_classifier.py` (slimflowers/deploy/predict.py) and the study (`export_run`).
"""
import os
import time

from absl import logging

from datasets import records
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.deploy import export_files
from slimflowers.deploy import serving
from slimflowers.deploy import tflite
from slimflowers.deploy import verification
from slimflowers.eval import model_source
from slimflowers.eval import sanity

FORMATS = ("saved_model", "tflite")
DEFAULT_QUANTIZE = tflite.QUANTIZATIONS  # export_image_classifier.py --quantize (the study picks its own)


def _check_options(formats, quantize, top_k, max_accuracy_drop, num_calibration_images, batch_size):
  formats, quantize = tuple(formats), tuple(quantize)
  for name, values, allowed in (("formats", formats, FORMATS), ("quantize", quantize, tflite.QUANTIZATIONS)):
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


def _choose_data(source, dataset_dir, quantize, verify_split, calibration_split):
  """(splits or None, quantize, skipped): without --dataset_dir, int8 and the verification are skipped, said once."""
  skipped = []
  if dataset_dir:
    splits = verification.dataset_splits(dataset_dir, source.num_classes, verify_split=verify_split,
                                         calibration_split=calibration_split if "int8" in quantize else None)
    return splits, quantize, skipped
  if "int8" in quantize:
    skipped.append("int8: skipped, it needs calibration images: pass --dataset_dir (and --calibration_split).")
    quantize = tuple(q for q in quantize if q != "int8")
  skipped.append("verification: skipped, no --dataset_dir. The artifacts are NOT checked against the checkpoint; "
                 "pass --dataset_dir to measure them.")
  for message in skipped:
    logging.warning("%s", message)
  return None, quantize, skipped


def _write_artifacts(tmp, module, source, *, step, use_ema, formats, quantize, splits, num_calibration_images):
  """The SavedModel, the TFLite models, labels.txt and export.json into `tmp`; returns {quantization: TFLiteModel}."""
  tflite_models = {}
  if "saved_model" in formats:
    start = time.perf_counter()
    serving.save_saved_model(module, os.path.join(tmp, serving.SAVED_MODEL_SUBDIR))
    logging.info("SavedModel written (%.1f s)", time.perf_counter() - start)
  for quantization in quantize:
    start = time.perf_counter()
    calibration = verification.calibration_images(splits.calibration, num_calibration_images, source.image_size,
                                                  source.preprocessing_name) if quantization == "int8" else None
    content = tflite.convert_tflite(module, quantization, calibration)
    fileio.write_bytes_atomic(os.path.join(tmp, tflite.tflite_filename(quantization)), content)
    tflite_models[quantization] = tflite.TFLiteModel(model_content=content)
    logging.info("%s written (%.1f s)", tflite.tflite_filename(quantization), time.perf_counter() - start)
  records.write_labels(tmp, source.class_names)
  fileio.write_json_atomic(os.path.join(tmp, run_dir.EXPORT_JSON), export_files.export_description(
      source, step=step, use_ema=use_ema, module=module, tflite_models=tflite_models,
      saved_model="saved_model" in formats))
  return tflite_models


def export_run(checkpoint_path, output_dir, *, dataset_dir=None, formats=FORMATS, quantize=DEFAULT_QUANTIZE,
               verify_split=None, calibration_split="train", num_calibration_images=300, use_ema=False, top_k=None,
               max_accuracy_drop=2.0, batch_size=32, overwrite=False):
  """Exports and verifies one checkpoint (see the module doc). Returns the report (also in export_report.json).

  `overwrite`: replace files of the user's in output_dir at paths the export writes (export_files.check_output_dir).

  Raises verification.VerificationFailed (after writing everything) when an artifact misses its bound.
  """
  formats, quantize = _check_options(formats, quantize, top_k, max_accuracy_drop, num_calibration_images, batch_size)
  existing = export_files.check_output_dir(output_dir, formats, quantize, overwrite)  # refuse now, not after converting
  source = model_source.resolve_source(checkpoint_path, dataset_dir)
  splits, quantize, skipped = _choose_data(source, dataset_dir, quantize, verify_split, calibration_split)
  top_k = serving.resolve_top_k(top_k, source.num_classes)
  model, step = model_source.build_model(source, use_ema=use_ema)
  module = serving.ServingModule(model, class_names=source.class_names, image_size=source.image_size,
                                 preprocessing_name=source.preprocessing_name, top_k=top_k)
  logging.info("Exporting %s (%d classes, %d px, %s preprocessing) from %s (step %d%s) to %s", source.model_name,
               source.num_classes, source.image_size, source.preprocessing_name, source.prefix, step,
               ", EMA weights" if use_ema else "", output_dir)

  export_files.remove_leftovers(output_dir)
  with export_files.staging_dir(output_dir, existing, overwrite) as tmp:
    tflite_models = _write_artifacts(tmp, module, source, step=step, use_ema=use_ema, formats=formats,
                                     quantize=quantize, splits=splits, num_calibration_images=num_calibration_images)
    rows = verification.verify(tmp, model, tflite_models, source, splits.verify if splits else None, batch_size,
                               saved_model="saved_model" in formats)
    failures = verification.verification_failures(rows, max_accuracy_drop)
    int8 = "int8" in quantize
    report = {"format_version": export_files.FORMAT_VERSION, "checkpoint": export_files.shipped_checkpoint_name(source),
              "step": int(step), "use_ema": bool(use_ema), "model_name": source.model_name,
              "num_classes": source.num_classes, "image_size": source.image_size,
              "preprocessing_name": source.preprocessing_name,
              "verify_split": splits.verify.split_name if splits else None,
              "num_examples": splits.verify.num_samples if splits else None,
              "calibration_split": calibration_split if int8 else None,
              "num_calibration_images": num_calibration_images if int8 else None,
              "max_accuracy_drop": max_accuracy_drop, "artifacts": rows, "failures": failures, "skipped": skipped,
              "summary": verification.summary_of(rows, splits.verify.split_name if splits else None)}
    fileio.write_json_atomic(os.path.join(tmp, run_dir.EXPORT_REPORT), report)

  where = f" on {report['verify_split']} ({report['num_examples']} examples)" if splits else " (not verified)"
  print(f"Export of {source.prefix}{where}:\n{verification.format_table(rows)}\nFiles: {output_dir}", flush=True)
  if sanity.is_suspect(rows[0].get("sanity")):
    logging.warning("THIS EXPORTED MODEL DOES NOT WORK: %s", sanity.warning(rows[0]["sanity"], step=step,
                                                                           split=report["verify_split"]))
  if failures:
    raise verification.VerificationFailed("\n".join(failures), report)
  return report
