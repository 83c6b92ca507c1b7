"""Watching a training run: evaluate each new checkpoint as it appears, stop after the final one.

    steps = eval_watch.run_continuous("runs/x", evaluate_fn, done_steps=outputs.done_steps)

Why a separate process: TF-Slim could only evaluate once; here the evaluator watches
`train_dir`, evaluates every checkpoint it sees (the newest when it falls behind) and
writes summaries on the training step axis, so TensorBoard pointed at `train_dir`
shows validation accuracy growing live. It only reads `train_dir`.
"""
import collections
import time

from absl import logging

from slimflowers.core import checkpoints
from slimflowers.core import run_dir

# A checkpoint that fails to read this many times in a row is given up on (it is corrupt,
# not merely being written or rotated).
MAX_READ_FAILURES = 3
EVAL_INTERVAL_SECS = 60    # seconds between looks for a new checkpoint (--eval_interval_secs)
EVAL_TIMEOUT_SECS = 3600   # stop after this long without a new checkpoint (--eval_timeout_secs)


def is_final_step(step, info):
  """True when `step` is the last checkpoint the run will write (from run_info.json)."""
  if info.get("finished") and info.get("final_step") is not None and step >= int(info["final_step"]):
    return True
  return info.get("max_steps") is not None and step >= int(info["max_steps"])


def wait_for(condition, *, timeout_secs, interval_secs, sleep=time.sleep, clock=time.monotonic):
  """Calls `condition()` every `interval_secs` until it returns something true, at most `timeout_secs`; returns
  its last value (false when the time ran out)."""
  deadline = clock() + timeout_secs
  while True:
    value = condition()
    if value or clock() >= deadline:
      return value
    sleep(max(0.0, min(interval_secs, deadline - clock())))


def wait_for_run(train_dir, *, timeout_secs, interval_secs, sleep=time.sleep, clock=time.monotonic):
  """run_info.json of `train_dir`, waiting (bounded) for a trainer started at the same moment to write it; {}."""
  info = run_dir.read_run_info(train_dir)
  if not info:
    logging.info("Waiting up to %ss for a training run to appear in %s (its %s).", timeout_secs, train_dir,
                 run_dir.RUN_INFO)
    info = wait_for(lambda: run_dir.read_run_info(train_dir), timeout_secs=timeout_secs,
                    interval_secs=interval_secs, sleep=sleep, clock=clock)
  return info


def wait_for_finished(train_dir, *, timeout_secs, interval_secs, sleep=time.sleep, clock=time.monotonic):
  """run_info.json once it says `finished` (the trainer writes it right after the final checkpoint), waiting at
  most `timeout_secs`; else the last one read."""
  def finished():
    info = run_dir.read_run_info(train_dir)
    return info if info.get("finished") else None
  info = finished()
  if info is None:
    logging.info("Waiting up to %ss for the run in %s to say it finished.", timeout_secs, train_dir)
    info = wait_for(finished, timeout_secs=timeout_secs, interval_secs=interval_secs, sleep=sleep, clock=clock)
  return info or run_dir.read_run_info(train_dir)


def run_continuous(train_dir, evaluate_fn, *, done_steps=(), eval_interval_secs=EVAL_INTERVAL_SECS,
                   eval_timeout_secs=EVAL_TIMEOUT_SECS, sleep=time.sleep, clock=time.monotonic, heartbeat=None):
  """Evaluates new checkpoints of `train_dir` as they appear; returns the steps evaluated.

  `evaluate_fn(prefix)` evaluates and records one checkpoint and returns its
  step; it may raise CheckpointUnreadable. Steps in `done_steps` (read from
  results.jsonl) are never re-evaluated, nor are checkpoints older than the
  newest evaluated one: when several new ones wait, only the newest is
  evaluated. Returns after the final step of a finished run, when the run
  is finished and nothing is left, or after `eval_timeout_secs` without a
  new checkpoint. `heartbeat()` is called every round (the eval_dir lock's).
  """
  done = set(int(s) for s in done_steps)
  newest_done = max(done, default=-1)
  steps = {}  # prefix -> global step (cached; reading it opens the index)
  failures = collections.Counter()
  warned = set()
  evaluated = []
  last_progress = clock()
  logging.info("Watching %s for checkpoints every %ss (timeout %ss)%s", train_dir, eval_interval_secs,
               eval_timeout_secs, f"; already evaluated steps {sorted(done)}" if done else "")
  while True:
    if heartbeat is not None:
      heartbeat()
    info = run_dir.read_run_info(train_dir)
    candidates = []
    for prefix in checkpoints.list_checkpoints(train_dir, warned):
      if failures[prefix] >= MAX_READ_FAILURES:
        continue
      if prefix not in steps:
        try:
          steps[prefix] = checkpoints.read_global_step(prefix)
        except checkpoints.CheckpointUnreadable as e:
          failures[prefix] += 1
          logging.warning("Skipping checkpoint (attempt %d of %d): %s", failures[prefix], MAX_READ_FAILURES, e)
          continue
      if steps[prefix] not in done and steps[prefix] > newest_done:
        candidates.append((steps[prefix], checkpoints.checkpoint_number(prefix), prefix))
    if candidates:
      step, _, prefix = max(candidates)
      if len(candidates) > 1:
        logging.info("Behind training: evaluating the newest step %d, not the older %s.",
                     step, sorted(c[0] for c in candidates)[:-1])
      try:
        step = int(evaluate_fn(prefix))
      except checkpoints.CheckpointUnreadable as e:
        failures[prefix] += 1
        logging.warning("Skipping checkpoint that vanished or is half-written (attempt %d of %d): %s",
                        failures[prefix], MAX_READ_FAILURES, e)
        continue
      done.add(step)
      newest_done = max(newest_done, step)
      evaluated.append(step)
      last_progress = clock()
      if is_final_step(step, info) or is_final_step(step, run_dir.read_run_info(train_dir)):
        logging.info("Evaluated the final step %d of the run; done.", step)
        return evaluated
      continue
    if info.get("finished"):
      final = info.get("final_step")
      if final is not None and int(final) not in done:
        logging.warning("Training finished at step %s but that checkpoint is not available; stopping.", final)
      else:
        logging.info("Training finished and its final step %s is evaluated; done.", final)
      return evaluated
    if clock() - last_progress >= eval_timeout_secs:
      logging.info("No new checkpoint in %s for %ss (--eval_timeout_secs); stopping.", train_dir, eval_timeout_secs)
      return evaluated
    sleep(eval_interval_secs)
