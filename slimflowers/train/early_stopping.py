r"""Early stopping: the evaluator's patience asks the trainer to stop, through a file in train_dir.

    python eval_image_classifier.py --checkpoint_path=runs/x --continuous --early_stopping_patience=5 \
        --early_stopping_min_delta=0.002 ...
    # EARLY STOPPING: validation accuracy 0.8123 at step 400 has not been beaten by more than 0.002 in 5 evaluations
    # (the trainer, at its next loop)  STOP REQUEST from the evaluator: ... Saved ckpt-460; stopping early.

The evaluator (`Patience`) counts evaluations since the validation accuracy last improved by more
than `min_delta` (Keras' EarlyStopping names); after `patience` of them it writes
`TRAIN_DIR/stop_request.json` (atomically: the only file an evaluator writes into train_dir). The
trainer (`StopWatcher`, an Orbit train action) looks for it after every loop of steps, saves a
checkpoint, and ends the run like a finished one (`finished`, `final_step`) with `stopped_early`,
`stopped_early_step` and `stop_reason` in run_info.json; the evaluator then evaluates that last
checkpoint and runs its final splits (final and best) as for any finished run. With several workers
only the chief reads the file and an all-reduce of its answer makes every worker stop at the same step.

A trainer restarted with a request in its train_dir says so and trains nothing; with
`--ignore_stop_request` it renames the request `stop_request.ignored-<time>.json` (kept, never
deleted) and trains on to --max_number_of_steps.
"""
import contextlib
import os
import time

from absl import logging
import tensorflow as tf

from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import run_dir

STOP_REQUEST = "stop_request.json"
# run_info.json entries of a run that stopped early (a resumed run with --ignore_stop_request drops them).
RECORD_KEYS = ("stopped_early", "stopped_early_step", "stop_reason")


def request_path(train_dir):
  return os.path.join(train_dir, STOP_REQUEST)


def read_request(train_dir):
  """The stop request in `train_dir` (a dict), or None."""
  path = request_path(train_dir)
  return fileio.read_json(path) if fileio.exists(path) else None


# ---------------------------------------------------------------------------------------------------------------------
# The evaluator's side


class Patience:
  """Keras EarlyStopping's rule on validation accuracy: stop after `patience` evaluations without an improvement
  of more than `min_delta` over the best so far."""

  def __init__(self, train_dir, *, patience, min_delta=0.0, history=()):
    if patience < 1:
      raise errors.BadValue(f"--early_stopping_patience={patience} must be >= 1 (evaluations without improvement).")
    if min_delta < 0:
      raise errors.BadValue(f"--early_stopping_min_delta={min_delta} must be >= 0 (an accuracy difference).")
    self.train_dir, self.patience, self.min_delta = train_dir, int(patience), float(min_delta)
    self.best, self.best_step, self.wait = None, None, 0
    self.requested = read_request(train_dir) is not None
    # A restarted evaluator goes on counting from results.jsonl.
    for row in sorted(history, key=lambda r: int(r["step"])):
      if isinstance(row.get("accuracy"), (int, float)) and "copied_from" not in row:
        self._count(int(row["step"]), float(row["accuracy"]))

  def _count(self, step, accuracy):
    if self.best is None or accuracy > self.best + self.min_delta:
      self.best, self.best_step, self.wait = accuracy, step, 0
    else:
      self.wait += 1

  def observe(self, result):
    """Counts one evaluation (a result dict: step, accuracy); writes the stop request when patience runs out.
    Returns True when it wrote it."""
    self._count(int(result["step"]), float(result["accuracy"]))
    if self.requested or self.wait < self.patience:
      return False
    reason = (f"validation accuracy {self.best:.4f} at step {self.best_step} has not been beaten by more than "
              f"{self.min_delta:g} in {self.wait} evaluations (--early_stopping_patience={self.patience})")
    fileio.write_json_atomic(request_path(self.train_dir), {
        "reason": reason, "requested_at_step": int(result["step"]), "best_step": self.best_step,
        "best_accuracy": self.best, "patience": self.patience, "min_delta": self.min_delta,
        "by": "eval_image_classifier.py", "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    self.requested = True
    logging.warning("EARLY STOPPING: %s; asked the trainer to stop (%s).", reason, request_path(self.train_dir))
    return True


# ---------------------------------------------------------------------------------------------------------------------
# The trainer's side


class StopRequested(Exception):
  """Raised by StopWatcher.action after the save; ends controller.train (caught by `stops_training`)."""


def at_start(train_dir, previous, *, ignore, latest_step, chief=True):
  """What a starting trainer does with a stop request already in `train_dir` (its run_info `previous`).

  Returns (run_info to record and return at once, or None to train). Without `ignore`: the request is named and
  nothing is trained; a run the request reached while no trainer ran is recorded as stopped at its newest
  checkpoint. With `ignore`: the request is renamed aside and the run's early stop, if any, is forgotten
  (`previous` is changed in place) so it trains on.
  """
  request = read_request(train_dir)
  if request is None:
    return None
  reason = request.get("reason", "no reason given")
  if ignore:
    if not chief:  # the chief moves it aside
      return None
    aside = os.path.join(train_dir, f"stop_request.ignored-{time.strftime('%Y%m%dT%H%M%S')}.json")
    fileio.rename(request_path(train_dir), aside, overwrite=False)
    if previous.get("stopped_early"):
      for key in RECORD_KEYS + ("finished", "final_step"):
        previous.pop(key, None)
    logging.warning("--ignore_stop_request: the stop request in %s (%s) is moved to %s; training on.", train_dir,
                    reason, aside)
    return None
  info = dict(previous)
  if chief and not info.get("finished") and latest_step is not None:
    info.update({"finished": True, "final_step": int(latest_step), "stopped_early": True,
                 "stopped_early_step": int(latest_step), "stop_reason": reason})
    run_dir.write_run_info(train_dir, info)
  logging.warning("STOP REQUEST in %s: %s. Nothing trained%s. Pass --ignore_stop_request to train on.",
                  request_path(train_dir), reason,
                  f"; the run ends at its checkpoint of step {info['final_step']}" if info.get("final_step") is not None
                  else "")
  return info


class StopWatcher:
  """An Orbit train action: after each loop of steps, the chief looks for a stop request; every worker learns its
  answer through one all-reduce, so all save at the same step and stop."""

  def __init__(self, train_dir, strategy, manager, global_step, *, chief):
    self.train_dir, self.strategy, self.manager, self.global_step, self.chief = (
        train_dir, strategy, manager, global_step, chief)
    self.record = {}

  def _agreed(self, seen):
    value = tf.constant(1 if seen else 0, tf.int32)
    per_replica = self.strategy.run(lambda: tf.identity(value))
    return int(self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)) > 0

  def action(self, unused_output):
    request = read_request(self.train_dir) if self.chief else None
    if not self._agreed(request is not None):
      return
    step = int(self.global_step.numpy())
    path = self.manager.save(checkpoint_number=step, check_interval=False)
    reason = (request or {}).get("reason", "the chief's stop request")
    self.record = {"stopped_early": True, "stopped_early_step": step, "stop_reason": reason}
    logging.warning("STOP REQUEST from the evaluator: %s. Saved %s at step %d; stopping early.", reason, path, step)
    raise StopRequested(reason)

  @contextlib.contextmanager
  def stops_training(self):
    """Around controller.train: a stop request ends it quietly (the run is then finished, at that step)."""
    try:
      yield
    except StopRequested:
      pass
