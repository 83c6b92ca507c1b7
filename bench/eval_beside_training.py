r"""The README's two terminals, N times: does the continuous evaluator evaluate the final splits of every run?

    .venv/bin/python bench/eval_beside_training.py --runs=10 --work_dir=/tmp/eval_beside_training
    # run 1/10: evaluator 31.2 s, trainer 24.9 s: final step 60 on test: yes (validation steps [20, 40, 60])
    # ...
    # 10 of 10 runs: the final checkpoint evaluated on the test split.

Each run starts `eval_image_classifier.py --continuous --final_eval_splits=test` first, on a train_dir that does
not exist yet and without --model_name (it must wait for the run to appear), then, a moment later,
`train_image_classifier.py` into that train_dir (mobilenet_v1_025 at 32 px on a small generated folder with a
test split, a checkpoint every --save_interval_steps), and waits for both. A run counts when the evaluator exits
0 having written the trainer's final step into eval_test/results.jsonl, and its output has no
"--final_eval_splits=test not evaluated" line. Issue 20 measured 1 of 3 before the evaluator waited for
`finished` (the trainer wrote it after counting GFLOPs, up to 20 s after its final checkpoint).
"""
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from slimflowers.core import cli  # pylint: disable=g-bad-import-order,wrong-import-position  (quiets TensorFlow)

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from datasets import records  # pylint: disable=g-import-not-at-top,wrong-import-position
from slimflowers.core import run_dir  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_integer("runs", 10, "How many trainer + evaluator pairs, one after the other.")
flags.DEFINE_string("work_dir", "/tmp/eval_beside_training", "Data and runs go here (runs are replaced).")
flags.DEFINE_integer("max_number_of_steps", 60, "Steps per run.")
flags.DEFINE_integer("save_interval_steps", 20, "Checkpoint interval.")
flags.DEFINE_float("start_gap_secs", 2.0, "The trainer starts this long after the evaluator.")
FLAGS = flags.FLAGS


def make_data(work_dir):
  data = os.path.join(work_dir, "data")
  if not os.path.isfile(os.path.join(data, records.DATASET_JSON)):
    from tests import tiny_data  # pylint: disable=g-import-not-at-top
    photos = tiny_data.write_folder(os.path.join(work_dir, "photos"), num_classes=3, per_class=40, size=40)
    subprocess.run([sys.executable, os.path.join(REPO, "download_and_convert_data.py"), "--dataset_name=folder",
                    f"--source={photos}", f"--dataset_dir={data}", "--validation_size=0.2", "--test_size=0.2"],
                   check=True, capture_output=True)
  return data


def one_run(i, data, work_dir):
  train_dir = os.path.join(work_dir, "runs", f"run{i}")
  shutil.rmtree(train_dir, ignore_errors=True)
  common = ["--dataset_name=folder", f"--dataset_dir={data}", "--num_gpus=0"]
  evaluator = subprocess.Popen(
      [sys.executable, os.path.join(REPO, "eval_image_classifier.py"), f"--checkpoint_path={train_dir}", *common,
       "--continuous", "--eval_interval_secs=1", "--eval_timeout_secs=600", "--final_eval_splits=test",
       "--batch_size=6"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  start = time.monotonic()
  time.sleep(FLAGS.start_gap_secs)  # the second terminal
  trainer = subprocess.run(
      [sys.executable, os.path.join(REPO, "train_image_classifier.py"), f"--train_dir={train_dir}", *common,
       "--model_name=mobilenet_v1_025", "--train_image_size=32", "--batch_size=16",
       f"--max_number_of_steps={FLAGS.max_number_of_steps}", f"--save_interval_steps={FLAGS.save_interval_steps}",
       "--save_interval_secs=0", "--log_every_n_steps=10", "--optimizer=adam", "--learning_rate=0.001"],
      capture_output=True, text=True, check=False)
  train_secs = time.monotonic() - start
  out, _ = evaluator.communicate(timeout=900)
  eval_secs = time.monotonic() - start
  test = _steps(os.path.join(train_dir, "eval_test"))
  validation = _steps(os.path.join(train_dir, "eval_validation"))
  ok = (trainer.returncode == 0 and evaluator.returncode == 0 and FLAGS.max_number_of_steps in test
        and "--final_eval_splits=test not evaluated" not in out)
  print(f"run {i}/{FLAGS.runs}: evaluator {eval_secs:.1f} s, trainer {train_secs:.1f} s: final step "
        f"{FLAGS.max_number_of_steps} on test: {'yes' if ok else 'NO'} (validation steps {validation})", flush=True)
  if not ok:
    print(out[-3000:] + trainer.stdout[-1500:] + trainer.stderr[-1500:], flush=True)
  return ok


def _steps(eval_dir):
  path = run_dir.results_path(eval_dir)
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return sorted(json.loads(line)["step"] for line in f if line.strip())


def main(argv):
  del argv
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  data = make_data(FLAGS.work_dir)
  good = sum(one_run(i, data, FLAGS.work_dir) for i in range(1, FLAGS.runs + 1))
  print(f"{good} of {FLAGS.runs} runs: the final checkpoint evaluated on the test split.")


if __name__ == "__main__":
  cli.run(main)
