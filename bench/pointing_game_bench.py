"""Does Grad-CAM point at the object? The pointing game (Zhang et al. 2016) for cifarnet on a generated set.

    .venv/bin/python bench/pointing_game_bench.py --work_dir=/tmp/pointing_game     # about 15 min on 2 busy cores

Generates the localisation set (slimflowers/eval/pointing_game.py: four striped or checked patches, each at a random
place on a cluttered background whose marks are the same for every class), converts it with the `folder` converter,
trains cifarnet on it with the real trainer (slimflowers.train.program.run), then explains a held-out set generated
with another seed through predict_image_classifier.py's code path (predict.run --explain: the overlays and
.npy heatmaps a user gets) and scores the heatmaps against the known boxes: among the correctly classified
images, the fraction whose heatmap maximum lies inside the box grown by --tolerance pixels. The random
baseline is the grown box's mean share of the image. Prints a Markdown row (BENCHMARKS.md, "Grad-CAM")
and writes WORK_DIR/results.json.
"""
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from slimflowers.core import cli  # pylint: disable=g-bad-import-order,wrong-import-position  (quiets TensorFlow)

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string("work_dir", "/tmp/pointing_game", "Data, the run and results go here.")
flags.DEFINE_integer("per_class", 400, "Training images per class.")
flags.DEFINE_integer("held_out_per_class", 100, "Held-out images per class (explained and scored).")
flags.DEFINE_integer("image_size", 48, "Generated image side and training size.")
flags.DEFINE_integer("steps", 1000, "Training steps (batch 32).")
flags.DEFINE_integer("tolerance", 3, "Pixels the box grows by on each side (the paper's 15 px at 224, scaled).")
FLAGS = flags.FLAGS


def measure(work_dir, *, per_class, held_out_per_class, image_size, steps, tolerance, batch_size=32):
  """Trains (unless done) and scores; returns the results dict."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import datasets  # pylint: disable=g-import-not-at-top
  from datasets import records  # pylint: disable=g-import-not-at-top
  from slimflowers.core import run_dir  # pylint: disable=g-import-not-at-top
  from slimflowers.deploy import predict  # pylint: disable=g-import-not-at-top
  from slimflowers.eval import pointing_game  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top

  photos, held_out = os.path.join(work_dir, "photos"), os.path.join(work_dir, "held_out")
  data, train_dir = os.path.join(work_dir, "converted"), os.path.join(work_dir, "run")
  if not os.path.exists(os.path.join(data, records.DATASET_JSON)):
    pointing_game.write_localisation_set(photos, per_class=per_class, size=image_size, seed=0)
    datasets.convert("folder", data, source=photos, validation_size=0.1, num_workers=2)
  boxes = pointing_game.write_localisation_set(held_out, per_class=held_out_per_class, size=image_size, seed=1)
  info = run_dir.read_run_info(train_dir)
  if not (info and info.get("finished") and info.get("final_step", 0) >= steps):  # more steps: a continuation
    train.run(train_flags.config(
        train_dir=train_dir, dataset_dir=data, dataset_name="folder", model_name="cifarnet",
        train_image_size=image_size, batch_size=batch_size, max_number_of_steps=steps, optimizer="adam",
        learning_rate=0.002, learning_rate_decay_type="cosine", save_interval_secs=0, log_every_n_steps=50,
        num_gpus=0))
    info = run_dir.read_run_info(train_dir)
  explained = os.path.join(work_dir, "explained")
  predictions = predict.run(train_dir, [held_out], explain=explained, top_k=1)
  heatmaps, box_list, correct = [], [], []
  predictions = [p for p in predictions if os.path.relpath(p.path, held_out) in boxes]  # not boxes.json's row
  for p in predictions:
    relative = os.path.relpath(p.path, held_out)
    heatmaps.append(np.load(os.path.join(explained, os.path.splitext(relative)[0] + ".npy")))
    box_list.append(boxes[relative])
    correct.append(p.top_k[0][1] == relative.split("/")[0])
  score, n = pointing_game.score(heatmaps, box_list, correct, tolerance)
  center = np.zeros([image_size, image_size], np.float32)
  center[image_size // 2, image_size // 2] = 1.0  # a heatmap that always points at the centre
  center_score, _ = pointing_game.score([center] * len(box_list), box_list, correct, tolerance)
  return {"images": len(predictions), "accuracy": float(np.mean(correct)), "scored": n,
          "pointing_game": score, "random_baseline": pointing_game.random_baseline(box_list, image_size, tolerance),
          "centre_baseline": center_score, "tolerance_px": tolerance, "image_size": image_size, "steps": steps,
          "train_images": per_class * len(pointing_game.CLASSES), "train_wall_secs": info.get("train_wall_secs")}


def main(argv):
  del argv
  results = measure(FLAGS.work_dir, per_class=FLAGS.per_class, held_out_per_class=FLAGS.held_out_per_class,
                    image_size=FLAGS.image_size, steps=FLAGS.steps, tolerance=FLAGS.tolerance)
  with open(os.path.join(FLAGS.work_dir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  print("| net | images (held out) | accuracy | pointing game | random | always the centre | tolerance |")
  print("|---|---|---|---|---|---|---|")
  print(f"| cifarnet, {results['image_size']} px, {results['steps']} steps | {results['images']} | "
        f"{results['accuracy']:.1%} | **{results['pointing_game']:.3f}** ({results['scored']} correct) | "
        f"{results['random_baseline']:.3f} | {results['centre_baseline']:.3f} | {results['tolerance_px']} px |")


if __name__ == "__main__":
  app.run(main)
