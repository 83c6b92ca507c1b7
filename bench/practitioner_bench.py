"""The practitioner's kit against the plain best checkpoint: TTA, checkpoint averaging, early stopping (issue 24).

    .venv/bin/python bench/practitioner_bench.py --work_dir=/tmp/practitioner_bench      # ~40 min on 2 busy cores

On two small sets, each converted with a test split -- `digits` (scikit-learn's 1,797 real 8x8 handwritten
digits, load_digits, written as PNGs per class) and `synthetic_flowers` (generated, stored at 96 px) -- it
trains mobilenet_v1_025 at 32 px with the real trainer (slimflowers.train.run, every default kept: PreciseBN
before each checkpoint), keeping a checkpoint every --save_every steps, and evaluates each on the validation
split (results.jsonl, as the continuous evaluator writes it). Then, on the TEST split, each with its 95 % Wilson
interval (scipy.stats.binomtest(k, n).proportion_ci(method="wilson")):
  - plain: the best checkpoint by validation accuracy (what best/ holds);
  - TTA flip and TTA crops on that checkpoint (slimflowers/eval/tta.py), with their evaluation speed against plain
    (images/s, the evaluator's own timing, same process, alternated; under load: read the ratio, not the rate);
  - the average of the top 3 and top 5 checkpoints by validation accuracy (slimflowers/train/averaging.py), batch-norm
    statistics re-estimated (PreciseBN, the default) and, for the top 5, averaged instead;
  - early stopping, for each --patience: early_stopping.Patience run over the same validation sequence (a
    live evaluator would have asked for the stop at that evaluation): the step it stops at, the steps saved, and
    the test accuracy of the best checkpoint up to there (what the evaluator's final splits evaluate).
Prints a Markdown table (BENCHMARKS.md, "Practitioner's kit") and writes WORK_DIR/results.json.
"""
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from slimflowers.core import cli  # pylint: disable=g-bad-import-order,wrong-import-position  (quiets TensorFlow)

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string("work_dir", "/tmp/practitioner_bench", "Data, runs and results go here.")
flags.DEFINE_list("folders", ["digits", "synthetic_flowers"], "Sets to run on.")
flags.DEFINE_integer("steps", 2400, "Training steps per set.")
flags.DEFINE_integer("save_every", 80, "A checkpoint (and a validation evaluation) every this many steps.")
flags.DEFINE_list("patience", ["2", "3", "4", "5"], "Early stopping's patience values (evaluations), a row each.")
flags.DEFINE_float("min_delta", 0.0, "Early stopping's min_delta.")
flags.DEFINE_string("results_name", "results.json", "File name of the results in --work_dir.")
FLAGS = flags.FLAGS

MODEL, SIZE, BATCH = "mobilenet_v1_025", 32, 32


def make_sets(work_dir):
  """{name: (dataset_name, dataset_dir)}: both converted with validation and test splits (made once)."""
  import datasets  # pylint: disable=g-import-not-at-top
  from datasets import records  # pylint: disable=g-import-not-at-top
  data = os.path.join(work_dir, "data")
  out = {"digits": ("folder", os.path.join(data, "digits")),
         "synthetic_flowers": ("synthetic_flowers", os.path.join(data, "synthetic_flowers"))}
  if not os.path.isfile(os.path.join(out["digits"][1], records.DATASET_JSON)):
    source = os.path.join(data, "digits_png")
    _write_digits(source)
    datasets.convert("folder", out["digits"][1], source=source, validation_size=0.2, test_size=0.2, num_workers=1)
  if not os.path.isfile(os.path.join(out["synthetic_flowers"][1], records.DATASET_JSON)):
    datasets.convert("synthetic_flowers", out["synthetic_flowers"][1], num_images=1500, validation_size=0.2,
                     test_size=0.2, resize_to=96, num_workers=1)
  return out


def _write_digits(root):
  """scikit-learn's load_digits (1,797 8x8 images, 16 grey levels) as root/<digit>/NNNN.png (as
  bench/precise_bn_bench.py writes them; not imported from there: its flags would be defined twice)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  for i, (image, label) in enumerate(zip(digits.images, digits.target)):
    os.makedirs(os.path.join(root, str(label)), exist_ok=True)
    pixels = np.clip(image * 255.0 / 16.0, 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "L").convert("RGB").save(os.path.join(root, str(label), f"{i:04d}.png"))


def wilson(k, n):
  from scipy import stats  # pylint: disable=g-import-not-at-top
  ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
  return [float(ci.low), float(ci.high)]


def run_set(name, dataset_name, dataset_dir, work_dir):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import datasets  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  from slimflowers.core import checkpoints, run_dir  # pylint: disable=g-import-not-at-top
  from slimflowers.data import input_pipeline  # pylint: disable=g-import-not-at-top
  from slimflowers.eval import exact as exact_eval, outputs as eval_outputs  # pylint: disable=g-import-not-at-top
  from slimflowers.train import averaging, early_stopping  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags, program as train  # pylint: disable=g-import-not-at-top
  train_dir = os.path.join(work_dir, "runs", name)
  cfg = train_flags.config(train_dir=train_dir, dataset_name=dataset_name, dataset_dir=dataset_dir, model_name=MODEL,
                           train_image_size=SIZE, batch_size=BATCH, max_number_of_steps=FLAGS.steps,
                           save_interval_steps=FLAGS.save_every, save_interval_secs=0,
                           max_checkpoints_to_keep=FLAGS.steps // FLAGS.save_every + 1,
                           log_every_n_steps=FLAGS.save_every)
  start = time.time()
  info = train.run(cfg)
  train_secs = time.time() - start
  cfg = train.resolve_config(cfg)
  strategy = tf.distribute.get_strategy()

  def evaluator(split_name, tta="none"):
    split = datasets.get_split(dataset_name, split_name, dataset_dir)
    model = nets.get_model(MODEL, split.num_classes, **train_flags.model_overrides(cfg))
    model(tf.zeros([1, SIZE, SIZE, 3]))
    ds = input_pipeline.eval_dataset(split, batch_size=100, image_size=SIZE, preprocessing_name=cfg.preprocessing_name)
    return exact_eval.ExactEvaluator(model, ds, strategy, num_classes=split.num_classes, global_batch_size=100,
                                     expected_examples=split.num_samples, tta=tta)

  # Validation: every checkpoint, into results.jsonl (as the continuous evaluator writes it).
  eval_dir = run_dir.eval_dir(train_dir, "validation")
  done = run_dir.evaluated_steps(eval_dir)
  val = evaluator("validation")
  outputs = eval_outputs.Outputs(eval_dir, class_names=[str(i) for i in range(val.num_classes)])
  try:
    for prefix in checkpoints.list_checkpoints(train_dir):
      if checkpoints.read_global_step(prefix) not in done:
        exact_eval.evaluate_checkpoint(prefix, val, split_name="validation", outputs=outputs)
  finally:
    outputs.close()
  results = run_dir.read_results(eval_dir)
  best_row = averaging.top_results(results, 1)[0]
  test = {mode: evaluator("test", mode) for mode in ("none", "flip", "crops")}
  n = test["none"].expected_examples

  def on_test(prefix, mode="none"):
    result, _ = exact_eval.evaluate_checkpoint(prefix, test[mode], split_name="test")
    k = round(result["accuracy"] * n)
    return {"accuracy": result["accuracy"], "correct": k, "n": n, "wilson95": wilson(k, n),
            "images_per_sec": result["images_per_sec"], "step": result["step"]}

  best_prefix = os.path.join(train_dir, os.path.basename(best_row["checkpoint"]))
  rows = {"plain best": on_test(best_prefix)}
  speeds = {"none": [], "flip": [], "crops": []}
  for _ in range(3):  # alternated, best of 3: the ratio under the same load
    for mode in ("none", "flip", "crops"):
      r = on_test(best_prefix, mode)
      speeds[mode].append(r["images_per_sec"])
      rows[{"none": "plain best", "flip": "TTA flip", "crops": "TTA crops"}[mode]] = r
  for mode in ("flip", "crops"):
    rows[f"TTA {mode}"]["speed_vs_plain"] = max(speeds[mode]) / max(speeds["none"])
  for top_n, batches in ((3, 50), (5, 50), (5, 0)):
    label = f"average top {top_n}" + ("" if batches else " (BN averaged)")
    out = os.path.join(train_dir, f"averaged_top{top_n}" + ("" if batches else "_bn_averaged"))
    record = averaging.average_top(train_dir, top_n, output_dir=out, precise_bn_batches=batches)
    rows[label] = dict(on_test(tf.train.latest_checkpoint(out)), averaged_steps=record["steps"])
  # Early stopping over the same validation sequence, for each patience.
  stops = {}
  for value in FLAGS.patience:
    scratch = os.path.join(work_dir, f"scratch_{name}_{value}")
    os.makedirs(scratch, exist_ok=True)
    request = early_stopping.request_path(scratch)
    if os.path.exists(request):
      os.remove(request)
    patience = early_stopping.Patience(scratch, patience=int(value), min_delta=FLAGS.min_delta)
    stop_step = stops[value] = next((int(r["step"]) for r in results if patience.observe(r)), None)
    if stop_step is None:
      continue
    seen = [r for r in results if int(r["step"]) <= stop_step]
    early_best = averaging.top_results(seen, 1)[0]
    rows[f"early stopping, patience {value}"] = dict(
        on_test(os.path.join(train_dir, os.path.basename(early_best["checkpoint"]))), stopped_at=stop_step,
        steps_saved=FLAGS.steps - stop_step)
  return {"set": name, "train_secs": train_secs, "sec_per_step": info.get("sec_per_step"),
          "best_validation": {"step": int(best_row["step"]), "accuracy": best_row["accuracy"]},
          "stop_steps": stops, "steps": FLAGS.steps, "rows": rows,
          "validation_curve": [(int(r["step"]), r["accuracy"]) for r in results]}


def table(all_results):
  lines = ["| set | variant | test accuracy | 95 % Wilson | step(s) | note |", "|---|---|---|---|---|---|"]
  for res in all_results:
    base = res["rows"]["plain best"]["accuracy"]
    for label, r in res["rows"].items():
      note = []
      if "speed_vs_plain" in r:
        note.append(f"{r['speed_vs_plain']:.2f}x plain's img/s")
      if "stopped_at" in r:
        note.append(f"stopped at {r['stopped_at']} of {res['steps']} ({r['steps_saved']} steps saved)")
      if label != "plain best":
        note.append(f"{100 * (r['accuracy'] - base):+.1f} points")
      steps = ",".join(str(s) for s in r.get("averaged_steps", [r["step"]]))
      lines.append(f"| {res['set']} | {label} | {100 * r['accuracy']:.1f} % ({r['correct']}/{r['n']}) | "
                   f"{100 * r['wilson95'][0]:.1f}-{100 * r['wilson95'][1]:.1f} | {steps} | {'; '.join(note)} |")
  return "\n".join(lines)


def main(argv):
  del argv
  sets = make_sets(FLAGS.work_dir)
  out = []
  for name in FLAGS.folders:
    res = run_set(name, *sets[name], FLAGS.work_dir)
    out.append(res)
    with open(os.path.join(FLAGS.work_dir, FLAGS.results_name), "w") as f:
      json.dump(out, f, indent=1)
    print(table([res]), flush=True)
  print(table(out))


if __name__ == "__main__":
  cli.run(main)
