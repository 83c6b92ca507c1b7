"""Trains a classifier on a converted dataset, TF-Slim's flags on a TF2 Orbit loop.

    python train_image_classifier.py --train_dir=runs/cifarnet --dataset_name=synthetic_flowers \
        --dataset_dir=data/synthetic_flowers --model_name=cifarnet --train_image_size=64 \
        --max_number_of_steps=300 --batch_size=64 --optimizer=adam --learning_rate=0.001

It logs `step N/M | loss ... | img/s | ETA`, writes checkpoints `ckpt-STEP`,
`flags.txt`, `run_info.json` and TensorBoard summaries under --train_dir, and,
killed and started again with the same command, continues where it stopped.
All flags: slimflowers/train_flags.py. The program: slimflowers/train.py.
"""
import types

from absl import app
from absl import flags

from slimflowers import train_flags

train_flags.define_flags()
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All options are --flags.")
  from slimflowers import train  # pylint: disable=g-import-not-at-top  (TF starts after flags parse)
  cfg = types.SimpleNamespace(**{name: FLAGS[name].value for name in train_flags.RUN_FLAGS})
  train.run(cfg)


if __name__ == "__main__":
  app.run(main)
