r"""Trains a classifier on a converted dataset, TF-Slim's flags on a TF2 Orbit loop.

    python train_image_classifier.py --train_dir=runs/cifarnet --dataset_name=synthetic_flowers \
        --dataset_dir=data/synthetic_flowers --model_name=cifarnet --train_image_size=64 \
        --max_number_of_steps=300 --batch_size=64 --optimizer=adam --learning_rate=0.001
    # 12:00:05 step 100/300 | loss 1.2345 | lr 0.001 | 250.3 img/s | ETA 00:00:51

It writes checkpoints `ckpt-STEP`, `flags.txt`, `run_info.json` and TensorBoard
summaries under --train_dir, and, killed and started again with the same command,
continues where it stopped. One trainer per --train_dir at a time (a lock). The
train_dir remembers the flags it was trained with: other training flags are refused
(a new --train_dir, or more --max_number_of_steps, are the ways forward).

Key flags: --train_dir, --dataset_name, --dataset_dir, --model_name, --max_number_of_steps
(or --num_epochs), --batch_size, --optimizer, --learning_rate, --train_image_size,
--checkpoint_path (fine-tuning). Every flag, alphabetically, below (slimflowers/train/flags.py);
the program: slimflowers/train/program.py.
"""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from slimflowers.train import flags as train_flags
from slimflowers.train import program as train

train_flags.define_flags()
flags.adopt_module_key_flags(train_flags)  # --help lists them (they are this script's flags)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All options are --flags.")
  train.run(train_flags.from_flags())


if __name__ == "__main__":
  cli.run(main)
