"""The demo: generated flowers -> TFRecords -> a study of small nets -> exported models -> report, in minutes.

    make demo                 # or: .venv/bin/python -m slimflowers.demo
    # [study] data: generating and converting synthetic_flowers into data/synthetic_flowers
    # [mobilenet_v1_050 train] 12:01:05 step 1800/1800 | loss 0.24 | ...   [mobilenet_v1_050 eval] eval validation ...
    # | run | model | ... | best val % | ...           (the comparison table)
    # Best validation accuracy: 95.60 % (mobilenet_v1_050, step 1800): reached the target of 95 %.
    # Time per phase (the models side by side: their phases overlap): data 31 s, ...
    # Demo finished in 4.3 min.

Generates `synthetic_flowers` into data/synthetic_flowers (once; stored with the shorter side at
RESIZE_TO px, since the nets train at IMAGE_SIZE), then runs the study (slimflowers/study/driver.py) in
this process with the models below, side by side (PARALLEL_MODELS), into runs/demo: each model trained by
train_image_classifier.py with a continuous eval_image_classifier.py beside it, which also
evaluates the final and the best checkpoint on the test split when training ends; then each
model's best checkpoint exported (SavedModel, TFLite float32 and int8, checked on the test
split); then the report (runs/demo/report/results.md and PNG plots) and the command to classify
photos with the best model. Run it again and it reuses the data and skips finished work; delete
runs/demo to start over.

Everything a user might tune is in the constants below (defaults in one place).
"""
import os
import sys
import time

from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

from absl import app  # pylint: disable=g-import-not-at-top

from datasets import records

from slimflowers.core import run_dir
from slimflowers.study import children
from slimflowers.study import driver as study

REPO_DIR = study.REPO_DIR
DATASET_NAME = "synthetic_flowers"
DATASET_DIR = os.path.join(REPO_DIR, "data", "synthetic_flowers")
RUNS_DIR = os.path.join(REPO_DIR, "runs", "demo")
CONVERT_SCRIPT = os.path.join(REPO_DIR, "download_and_convert_data.py")
PREDICT_SCRIPT = "predict_image_classifier.py"

NUM_IMAGES = 2500                # generated images (the dataset's default)
TEST_SIZE = 0.1                  # a test split, so the report shows test accuracy (validation: the default 20 %)
RESIZE_TO = 128                  # stored images' shorter side (download_and_convert_data.py --resize_to)
# cifarnet at 64 px is 4-7x slower than mobilenet_v1_025 (dense 5x5 convs) and reached 54 % in 300 steps,
# so it is not in the default list. Measured figures: BENCHMARKS.md ("The demo").
MODELS = ("mobilenet_v1_025", "mobilenet_v1_050")
IMAGE_SIZE = 64
MAX_STEPS = 1800
CROP_AREA_RANGE = "0.25,1.0"     # 64 px images: crops of at least a quarter of the photo (README, small images)
BATCH_SIZE = 32
OPTIMIZER = "adam"
LEARNING_RATE = 0.005
LEARNING_RATE_DECAY_TYPE = "cosine"
END_LEARNING_RATE = 0.0001
SAVE_INTERVAL_STEPS = 200        # a checkpoint (and a validation point) every 200 steps
LOG_EVERY_N_STEPS = 100
EVAL_INTERVAL_SECS = 10
EVAL_BATCH_SIZE = 100
EXPORT = True                    # export each model's best checkpoint (study --export)
PARALLEL_MODELS = 2              # both models at once, a core each (study --parallel_models): small nets on a
                                 # CPU use about one core each, so this halves the training phase (BENCHMARKS.md)
TARGET_VAL_ACCURACY = 0.95       # the demo's promise for the best model


def train_flags():
  return [f"--train_image_size={IMAGE_SIZE}", f"--max_number_of_steps={MAX_STEPS}", f"--batch_size={BATCH_SIZE}",
          f"--optimizer={OPTIMIZER}", f"--learning_rate={LEARNING_RATE}",
          f"--learning_rate_decay_type={LEARNING_RATE_DECAY_TYPE}", f"--end_learning_rate={END_LEARNING_RATE}",
          f"--save_interval_steps={SAVE_INTERVAL_STEPS}", f"--log_every_n_steps={LOG_EVERY_N_STEPS}",
          f"--crop_area_range={CROP_AREA_RANGE}", "--seed=0"]


def _rel(path):
  rel = os.path.relpath(path)
  return path if rel.startswith("..") else rel


def make_data(supervisor):
  """Generates and converts synthetic_flowers unless data/synthetic_flowers already holds it."""
  if os.path.isfile(os.path.join(DATASET_DIR, records.DATASET_JSON)):
    supervisor.say(f"data: {_rel(DATASET_DIR)} already converted; reusing it")
    return
  supervisor.say(f"data: generating and converting {DATASET_NAME} into {_rel(DATASET_DIR)}")
  cmd = [sys.executable, CONVERT_SCRIPT, f"--dataset_name={DATASET_NAME}", f"--dataset_dir={DATASET_DIR}",
         f"--num_images={NUM_IMAGES}", f"--test_size={TEST_SIZE}", f"--resize_to={RESIZE_TO}"]
  supervisor.wait(DATASET_NAME, [supervisor.start("data", cmd, os.path.join(RUNS_DIR, "convert.log"))])


def run_demo():
  start = time.monotonic()
  supervisor = children.Supervisor()
  make_data(supervisor)
  cfg = study.StudyConfig(
      dataset_name=DATASET_NAME, dataset_dir=DATASET_DIR, runs_dir=RUNS_DIR, train_flags=train_flags(),
      eval_batch_size=EVAL_BATCH_SIZE, eval_interval_secs=EVAL_INTERVAL_SECS, eval_image_size=IMAGE_SIZE,
      max_number_of_steps=MAX_STEPS, export=EXPORT, parallel_models=PARALLEL_MODELS,
      command="python -m slimflowers.demo")
  report = study.run_study(cfg, list(MODELS), supervisor=supervisor)
  scored = [r for r in report.rows if r["best_val_accuracy"] is not None]
  print()
  if scored:
    best = max(scored, key=lambda r: r["best_val_accuracy"])
    verdict = "reached" if best["best_val_accuracy"] >= TARGET_VAL_ACCURACY else "BELOW"
    print(f"Best validation accuracy: {100 * best['best_val_accuracy']:.2f} % ({best['run']}, step "
          f"{best['best_val_step']}): {verdict} the target of {100 * TARGET_VAL_ACCURACY:.0f} %.")
  print(f"Table: {_rel(report.paths['results.md'])} and {_rel(report.paths['results.csv'])}")
  print(f"Plots: {', '.join(_rel(report.paths[n]) for n in run_dir.REPORT_FILES if n.endswith('.png'))}")
  print(f"TensorBoard (curves of every run, HPARAMS tab): tensorboard --logdir {_rel(RUNS_DIR)}")
  if scored:
    export_dir = os.path.join(RUNS_DIR, best["run"], run_dir.EXPORT_SUBDIR)
    if os.path.isdir(export_dir):
      print(f"Classify your own photos with the best model: .venv/bin/python {PREDICT_SCRIPT} "
            f"--model={_rel(export_dir)} path/to/photos/  (or the phone model {_rel(export_dir)}/model_int8.tflite)")
  print(f"Time per phase{' (the models side by side: their phases overlap)' if PARALLEL_MODELS > 1 else ''}: "
        f"{describe_phases(supervisor.durations) or 'nothing left to do'}; report {report.secs:.0f} s.")
  if report.analysis is not None and report.analysis.ranking:
    print(report.analysis.ranking)
  print(f"Demo finished in {(time.monotonic() - start) / 60:.1f} min.")
  print("Next: your own data -- see README.md (python -m slimflowers.study --models=... --runs_dir=...).")
  print(f"The whole report on one page (opens from disk): {_rel(report.paths['report.html'])}")


def describe_phases(durations):
  """'data 20 s, m train 95 s (its evaluator 101 s: beside it, then the test split), m export 25 s, ...'."""
  parts = []
  for label, secs in durations.items():
    model = label.rsplit(" ", 1)[0]
    if label.endswith(" eval") and f"{model} train" in durations:
      continue  # told with its trainer
    part = f"{label} {secs:.0f} s"
    if label.endswith(" train") and f"{model} eval" in durations:
      part += f" (its evaluator {durations[model + ' eval']:.0f} s: beside it, then the test split)"
    parts.append(part)
  return ", ".join(parts)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"The demo takes no arguments (got {argv[1:]}); edit the constants in {__file__}.")
  children.exit_on_interrupt(run_demo, "demo", "stopped. Run `make demo` again to resume.")
