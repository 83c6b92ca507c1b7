r"""Classifies image files with an exported model (SavedModel or .tflite) or a training checkpoint.

    python predict_image_classifier.py --model=exports/xception photos/ more/*.jpg one.png --top_k=3 \
        --output=predictions.csv
    # 12:00:41 Classified 1,234 of 1,236 files in 41.2 s (30.0 images/s); 2 could not be classified (error column).

--model: an export directory (export_image_classifier.py --output_dir), one of its model_<quant>.tflite
files, or a run directory / checkpoint. Directories are walked recursively, as the converter walks them
(directory links are not followed; each file once). Without --output, prints
`path<TAB>top-1 label<TAB>probability` per file. A file that is not a readable image gets an error row
and the run goes on; the exit code is non-zero only when no file could be classified.
The program: slimflowers/deploy/predict.py.
"""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

from absl import flags  # pylint: disable=g-import-not-at-top

from slimflowers.deploy import predict

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "An export directory, a .tflite file of one, or a run directory / checkpoint.")
flags.DEFINE_integer("top_k", None, "Classes per file (default 5, or the number of classes when fewer; a larger "
                     "value is clamped to it, with a warning).")
flags.DEFINE_string("output", None, "predictions.csv or predictions.jsonl; default: print the top-1 class per file. "
                    "An existing file is replaced only if this program wrote it (or with --overwrite).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output file that this program did not write.")
flags.DEFINE_integer("batch_size", 64, "Images per batch.")
flags.DEFINE_bool("use_ema", False, "Checkpoints only: use the moving averages (training used --moving_average_decay).")
flags.mark_flag_as_required("model")


def main(argv):
  predict.run(FLAGS.model, argv[1:], top_k=FLAGS.top_k, output=FLAGS.output, batch_size=FLAGS.batch_size,
              use_ema=FLAGS.use_ema, overwrite=FLAGS.overwrite)


if __name__ == "__main__":
  cli.run(main)
