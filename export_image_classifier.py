r"""Exports a trained classifier for use outside the framework, and checks every exported file against it.

    python export_image_classifier.py --checkpoint_path=runs/flowers102/xception/eval_validation/best \
        --output_dir=exports/xception --dataset_dir=data/flowers102
    # Export of runs/flowers102/xception/eval_validation/best/ckpt-N on test (6149 examples):
    # | artifact       | size MB | top-1 % | change (points) | agreement % | max rel logit diff | ms/image ... |
    # | checkpoint     | ...     | ...     |           +0.00 |      100.00 |            0.0e+00 |          n/a |
    # | saved_model    | ...     | ...     |           +0.00 |      100.00 |            ...     | ...          |
    # | tflite_float32 | ... (also tflite_float16, tflite_dynamic, tflite_int8)
    # Files: exports/xception   (saved_model/, model_<quant>.tflite, labels.txt, export.json, export_report.json)

--checkpoint_path: a run directory (its newest checkpoint), a ckpt-STEP prefix, or RUN/eval_validation/best.
The model, its classes and its preprocessing come from the checkpoint and its run. Without --dataset_dir
the int8 model (it needs calibration images) and the verification are skipped, with a warning.
Exit code 1 when an artifact fails its check (the files and export_report.json are kept).
The program: slimflowers/deploy/export.py.
"""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from slimflowers.deploy import export
from slimflowers.deploy import tflite

FLAGS = flags.FLAGS

flags.DEFINE_string("checkpoint_path", None, "A train_dir (newest checkpoint), a prefix TRAIN_DIR/ckpt-1000, or "
                    "TRAIN_DIR/eval_validation/best.")
flags.DEFINE_bool("use_ema", False, "Export the moving averages (training used --moving_average_decay).")
flags.DEFINE_string("output_dir", None, "Where the exported files go: a new or empty directory, or an earlier export "
                    "(its own files are replaced; files you added are kept).")
flags.DEFINE_list("formats", list(export.FORMATS), f"Any of {','.join(export.FORMATS)}.")
flags.DEFINE_list("quantize", list(export.DEFAULT_QUANTIZE), "TFLite variants, any of "
                  f"{','.join(tflite.QUANTIZATIONS)} (int8: uint8 input and output, needs --dataset_dir).")
flags.DEFINE_string("dataset_dir", None, "The converted dataset: int8 calibration and verification images.")
flags.DEFINE_string("calibration_split", "train", "Split whose images calibrate the int8 model.")
flags.DEFINE_integer("num_calibration_images", 300, "Calibration images, spread evenly over --calibration_split.")
flags.DEFINE_string("verify_split", None, "Split every artifact is evaluated on; default: test if the dataset has "
                    "one, else validation.")
flags.DEFINE_integer("top_k", None, "Classes in the SavedModel's top_k_* outputs (default 5, or the number of "
                     "classes when fewer; a larger value is clamped to it, with a warning).")
flags.DEFINE_float("max_accuracy_drop", 2.0, "Largest top-1 loss, in points, allowed to a quantized model.")
flags.DEFINE_integer("batch_size", 32, "Verification batch size.")
flags.DEFINE_bool("overwrite", False, "Replace files in --output_dir that the export did not write (or that changed "
                  "since) at the paths it writes. Other files you added there are always kept.")
flags.mark_flag_as_required("checkpoint_path")
flags.mark_flag_as_required("output_dir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All options are --flags.")
  export.export_run(
      FLAGS.checkpoint_path, FLAGS.output_dir, dataset_dir=FLAGS.dataset_dir, formats=FLAGS.formats,
      quantize=FLAGS.quantize, verify_split=FLAGS.verify_split, calibration_split=FLAGS.calibration_split,
      num_calibration_images=FLAGS.num_calibration_images, use_ema=FLAGS.use_ema, top_k=FLAGS.top_k,
      max_accuracy_drop=FLAGS.max_accuracy_drop, batch_size=FLAGS.batch_size, overwrite=FLAGS.overwrite)


if __name__ == "__main__":
  cli.run(main)
