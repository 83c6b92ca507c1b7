"""Early stopping (slimflowers/train/early_stopping.py): the evaluator's patience, the trainer's stop, a restart."""
import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from slimflowers.train import early_stopping
from slimflowers.core import errors
from slimflowers.eval import program as evaluate
from slimflowers.core import run_dir
from tests import tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(ROOT, "train_image_classifier.py")


def _results(*accuracies):
  return [{"step": 10 * (i + 1), "accuracy": a} for i, a in enumerate(accuracies)]


def test_patience_counts_evaluations_without_an_improvement_above_min_delta(tmp_path):
  p = early_stopping.Patience(str(tmp_path), patience=2, min_delta=0.01)
  assert not p.observe({"step": 10, "accuracy": 0.5})
  assert not p.observe({"step": 20, "accuracy": 0.505})  # +0.005: not an improvement
  assert not p.observe({"step": 30, "accuracy": 0.52})   # +0.02: the new best, the count starts again
  assert not p.observe({"step": 40, "accuracy": 0.52})
  assert not os.path.exists(early_stopping.request_path(str(tmp_path)))
  assert p.observe({"step": 50, "accuracy": 0.3})
  request = json.loads((tmp_path / early_stopping.STOP_REQUEST).read_text())
  assert request["best_step"] == 30 and request["requested_at_step"] == 50 and request["patience"] == 2
  assert "0.5200 at step 30" in request["reason"]
  assert not p.observe({"step": 60, "accuracy": 0.1})  # written once


def test_a_restarted_evaluator_counts_on_from_results_jsonl(tmp_path):
  p = early_stopping.Patience(str(tmp_path), patience=3, history=_results(0.4, 0.6, 0.6, 0.5))
  assert (p.best, p.best_step, p.wait) == (0.6, 20, 2)
  assert p.observe({"step": 50, "accuracy": 0.6})
  # The request is there now: a later evaluator (patience 1, run out) does not write it again.
  assert not early_stopping.Patience(str(tmp_path), patience=1, history=_results(0.5)).observe(
      {"step": 90, "accuracy": 0.1})
  with pytest.raises(errors.BadValue, match="--early_stopping_patience=0 must be >= 1"):
    early_stopping.Patience(str(tmp_path), patience=0)


def test_patience_needs_continuous(tmp_path):
  with pytest.raises(errors.BadValue, match="needs --continuous"):
    evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(tmp_path), dataset_name="folder",
                 dataset_dir=str(tmp_path), early_stopping_patience=3)


def test_a_run_that_cannot_improve_is_stopped_by_the_evaluators_patience(tiny_dataset_with_test, tmp_path):
  """The trainer in a subprocess at a learning rate of 1e-9 for a million steps, the evaluator in this process."""
  train_dir = tmp_path / "train"
  max_steps = 10**6
  flags = dict(tiny_data.TRAIN_DEFAULTS, learning_rate=1e-9, max_number_of_steps=max_steps, save_interval_steps=4,
               steps_per_loop=4, precise_bn_batches=0)
  cmd = [sys.executable, TRAIN_SCRIPT, f"--train_dir={train_dir}", f"--dataset_dir={tiny_dataset_with_test}",
         "--num_gpus=0", *[f"--{k}={v}" for k, v in flags.items()]]
  trainer = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(train_dir), dataset_name="folder",
                 dataset_dir=tiny_dataset_with_test, batch_size=9, continuous=True, eval_interval_secs=0.2,
                 eval_timeout_secs=120, final_eval_splits=("test",), early_stopping_patience=2)
    out, _ = trainer.communicate(timeout=120)
  finally:
    if trainer.poll() is None:
      trainer.kill()
      trainer.communicate()
  assert trainer.returncode == 0, out[-4000:]
  info = run_dir.read_run_info(str(train_dir))
  assert info["stopped_early"] is True and info["finished"] is True
  assert info["final_step"] == info["stopped_early_step"] < max_steps
  assert "--early_stopping_patience=2" in info["stop_reason"] and "stopping early" in out
  validation = run_dir.read_results(str(train_dir / "eval_validation"))
  assert len(validation) >= 3 and validation[-1]["step"] == info["final_step"]
  assert len({r["accuracy"] for r in validation}) == 1  # it could not improve
  best = run_dir.read_best(str(train_dir / "eval_validation"))
  # The final splits ran as for any finished run: the final checkpoint and the best one on the test split.
  assert [r["step"] for r in run_dir.read_results(str(train_dir / "eval_test"))] == [info["final_step"]]
  if best:
    assert [r["step"] for r in run_dir.read_results(str(train_dir / "eval_test_best"))] == [best["step"]]

  # Restarted with the request still there: says so and trains nothing.
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert again.returncode == 0 and "STOP REQUEST in" in again.stdout + again.stderr
  assert run_dir.read_run_info(str(train_dir))["final_step"] == info["final_step"]


def test_restart_with_a_request_trains_nothing_unless_told_to_ignore_it(tiny_dataset, tmp_path):
  train_dir = tmp_path / "run"
  tiny_data.train(train_dir, tiny_dataset, max_number_of_steps=2)
  (train_dir / early_stopping.STOP_REQUEST).write_text(json.dumps({"reason": "told so"}))
  info = tiny_data.train(train_dir, tiny_dataset, max_number_of_steps=4)
  assert info["final_step"] == 2 and not os.path.exists(train_dir / "ckpt-4.index")
  info = tiny_data.train(train_dir, tiny_dataset, max_number_of_steps=4, ignore_stop_request=True)
  assert info["final_step"] == 4 and "stopped_early" not in info
  assert not (train_dir / early_stopping.STOP_REQUEST).exists()
  (aside,) = train_dir.glob("stop_request.ignored-*.json")
  assert json.loads(aside.read_text())["reason"] == "told so"


def test_a_request_that_came_while_no_trainer_ran_ends_the_run_at_its_newest_checkpoint(tiny_dataset, tmp_path):
  train_dir = tmp_path / "run"
  tiny_data.train(train_dir, tiny_dataset, max_number_of_steps=2)
  info = run_dir.read_run_info(str(train_dir))
  for key in ("finished", "final_step"):  # as a trainer killed before its end leaves it
    info.pop(key)
  run_dir.write_run_info(str(train_dir), info)
  (train_dir / early_stopping.STOP_REQUEST).write_text(json.dumps({"reason": "patience"}))
  info = tiny_data.train(train_dir, tiny_dataset, max_number_of_steps=6)
  assert (info["finished"], info["final_step"], info["stopped_early"], info["stop_reason"]) == (True, 2, True,
                                                                                              "patience")
  assert run_dir.read_run_info(str(train_dir))["stopped_early_step"] == 2


def test_the_study_passes_patience_to_its_evaluators_and_counts_a_stopped_run_as_done(tmp_path):
  from slimflowers.study import driver as study  # pylint: disable=g-import-not-at-top
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir="d", runs_dir=str(tmp_path), early_stopping_patience=4,
                          early_stopping_min_delta=0.01)
  cmd = study.eval_command(cfg, "cifarnet")
  assert "--early_stopping_patience=4" in cmd and "--early_stopping_min_delta=0.01" in cmd
  assert not any("early_stopping" in a for a in study.eval_command(study.StudyConfig("folder", "d", "r"), "cifarnet"))
  run_dir.write_run_info(str(tmp_path / "m"), {"finished": True, "final_step": 40, "stopped_early": True})
  assert study.training_done(str(tmp_path / "m"), max_number_of_steps=1000)
  run_dir.write_run_info(str(tmp_path / "n"), {"finished": True, "final_step": 40})
  assert not study.training_done(str(tmp_path / "n"), max_number_of_steps=1000)
