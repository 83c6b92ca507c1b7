"""Class imbalance: mean per-class accuracy with and without --class_weights=balanced and --balanced_sampling.

    .venv/bin/python bench/imbalance_bench.py --work_dir=/tmp/imbalance     # about 15 min on 2 busy cores

A 10:1 imbalanced folder: the localisation set's four patterns (slimflowers/eval/pointing_game.py), two classes
with --major images each and two with a tenth of that, converted by the `folder` converter. cifarnet is
trained on it three times with the real trainer (slimflowers.train.program.run, same seed, steps and flags but the
option): plain, --class_weights=balanced, --balanced_sampling; each is scored on a balanced held-out set
(another seed, --held_out_per_class per class) through predict.run: accuracy, mean per-class accuracy and
the minority classes' recall. Prints a Markdown table (BENCHMARKS.md, "Class imbalance") and writes
WORK_DIR/results.json.
"""
import json
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from slimflowers.core import cli  # pylint: disable=g-bad-import-order,wrong-import-position  (quiets TensorFlow)

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string("work_dir", "/tmp/imbalance", "Data, runs and results go here.")
flags.DEFINE_integer("major", 400, "Images of each large class (the small ones get a tenth).")
flags.DEFINE_integer("held_out_per_class", 100, "Held-out images per class.")
flags.DEFINE_integer("steps", 500, "Training steps per case (batch 32).")
FLAGS = flags.FLAGS

CASES = {"plain": {}, "class_weights=balanced": {"class_weights": "balanced"},
         "balanced_sampling": {"balanced_sampling": True}}
SIZE = 48


def main(argv):
  del argv
  import numpy as np  # pylint: disable=g-import-not-at-top
  import datasets  # pylint: disable=g-import-not-at-top
  from datasets import records  # pylint: disable=g-import-not-at-top
  from slimflowers.core import run_dir  # pylint: disable=g-import-not-at-top
  from slimflowers.deploy import predict  # pylint: disable=g-import-not-at-top
  from slimflowers.eval import pointing_game  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top
  work = FLAGS.work_dir
  photos, held_out, data = (os.path.join(work, d) for d in ("photos", "held_out", "converted"))
  classes = pointing_game.CLASSES
  minor = classes[2:]
  if not os.path.exists(os.path.join(data, records.DATASET_JSON)):
    pointing_game.write_localisation_set(photos, per_class=FLAGS.major, size=SIZE, seed=0)
    os.remove(os.path.join(photos, pointing_game.BOXES_FILE))
    for name in minor:
      for f in sorted(os.listdir(os.path.join(photos, name)))[FLAGS.major // 10:]:
        os.remove(os.path.join(photos, name, f))
    datasets.convert("folder", data, source=photos, validation_size=0, num_workers=2)
  if not os.path.isdir(held_out):
    pointing_game.write_localisation_set(held_out, per_class=FLAGS.held_out_per_class, size=SIZE, seed=1)
    os.remove(os.path.join(held_out, pointing_game.BOXES_FILE))
  results = {}
  for case, extra in CASES.items():
    train_dir = os.path.join(work, "runs", case.replace("=", "_"))
    info = run_dir.read_run_info(train_dir)
    if not (info and info.get("finished")):
      shutil.rmtree(train_dir, ignore_errors=True)  # a case killed midway starts again (our own directory)
      train.run(train_flags.config(
          train_dir=train_dir, dataset_dir=data, dataset_name="folder", model_name="cifarnet", train_image_size=SIZE,
          batch_size=32, max_number_of_steps=FLAGS.steps, optimizer="adam", learning_rate=0.002,
          learning_rate_decay_type="cosine", save_interval_secs=0, log_every_n_steps=100, num_gpus=0, **extra))
    predictions = predict.run(train_dir, [held_out], top_k=1)
    truth = [os.path.relpath(p.path, held_out).split("/")[0] for p in predictions]
    guess = [p.top_k[0][1] for p in predictions]
    recall = {c: float(np.mean([g == c for t, g in zip(truth, guess) if t == c])) for c in classes}
    results[case] = {"accuracy": float(np.mean([t == g for t, g in zip(truth, guess)])),
                     "mean_per_class_accuracy": float(np.mean(list(recall.values()))), "recall": recall}
  with open(os.path.join(work, "results.json"), "w", encoding="utf-8") as f:
    json.dump({"major": FLAGS.major, "minor": FLAGS.major // 10, "steps": FLAGS.steps, "cases": results}, f, indent=2)
  print(f"| cifarnet, {SIZE} px, {FLAGS.steps} steps, train {FLAGS.major}:{FLAGS.major // 10} | accuracy | mean "
        f"per-class accuracy | recall of the small classes ({', '.join(minor)}) |")
  print("|---|---|---|---|")
  for case, r in results.items():
    minority = ", ".join(f"{r['recall'][c]:.0%}" for c in minor)
    print(f"| {case} | {r['accuracy']:.1%} | **{r['mean_per_class_accuracy']:.1%}** | {minority} |")


if __name__ == "__main__":
  app.run(main)
