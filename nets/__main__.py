"""Prints the registry as a table: sizes, trainable parameters, GFLOPs per image, preprocessing.

    .venv/bin/python -m nets                 # all nets, about 1-2 minutes on 2 CPU cores
    .venv/bin/python -m nets --num_classes=5 --models=resnet_v1_50,cifarnet

Parameters are counted on the built model at num_classes=1000 and at
--num_classes; GFLOPs are counted from the TF graph at the default image size
(batch 1, inference), the profiler's 2 FLOPs per multiply-add.
"""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import keras

import nets
from slimflowers.core import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_classes", 102, "Classes for the second parameter column (the study: 102).")
flags.DEFINE_list("models", None, "Names or aliases to show (default: every registered net).")


def _row(name, num_classes):
  spec = nets.get_spec(name)
  model = nets.get_model(name, 1000, image_size=spec.default_image_size)
  params_1000 = nets.trainable_parameter_count(model)
  # The head is GAP -> logits (dense or 1x1 conv): D*C weights + C biases; count it exactly.
  logits = model.get_layer("logits")
  features = int(logits.kernel.shape[-2])
  params_n = params_1000 + (features + 1) * (num_classes - 1000)
  flops = nets.gflops(model, spec.default_image_size)
  keras.backend.clear_session()
  return (spec.name, ",".join(spec.aliases) or "-", str(spec.default_image_size),
          str(spec.min_image_size), f"{params_1000:,}", f"{params_n:,}", f"{flops:.2f}",
          spec.preprocessing)


def main(argv):
  del argv
  if FLAGS.num_classes < 1:
    raise app.UsageError(f"--num_classes={FLAGS.num_classes} must be >= 1.")
  names = [nets.get_spec(n).name for n in FLAGS.models] if FLAGS.models else nets.list_models()
  header = ("name", "aliases", "size", "min", "params@1000", f"params@{FLAGS.num_classes}",
            "GFLOPs", "preprocessing")
  rows = []
  for name in names:
    rows.append(_row(name, FLAGS.num_classes))
  widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
  for row in [header] + rows:
    print("  ".join(cell.rjust(w) if i >= 2 and i < 7 else cell.ljust(w)
                    for i, (cell, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
  cli.run(main)
