r"""The eval_image_classifier.py program: exact evaluation of checkpoints, once or continuously beside training.

    python eval_image_classifier.py --checkpoint_path=runs/cifarnet --dataset_name=synthetic_flowers \
        --dataset_dir=data/synthetic_flowers --continuous --num_gpus=0 --final_eval_splits=test
    # eval validation step 200: accuracy=0.8314 top_5_accuracy=1.0000 loss=0.4712 ... num_examples=350
    # ... one line per checkpoint; after the final step of the finished run, the final and the best
    # checkpoint on the test split; then it exits.

Read top to bottom: where to look and write -> data -> model -> one checkpoint or a watch
-> the final splits. The pieces: exact_eval.py (the exact counting), eval_outputs.py
(summaries, results.jsonl, best/), eval_watch.py (the continuous loop). An evaluator
writes only into its own eval_dir(s) (default TRAIN_DIR/eval_SPLIT), each held with a
lock, and never into train_dir itself -- but for one file, with --early_stopping_patience: the
stop request (slimflowers/train/early_stopping.py).
"""
import json
import os

from absl import logging
import tensorflow as tf

import datasets
import nets
from slimflowers.core import checkpoints
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import locks
from slimflowers.core import run_dir
from slimflowers.data import input_pipeline
from slimflowers.eval import exact as exact_eval
from slimflowers.eval import model_source
from slimflowers.eval import outputs as eval_outputs
from slimflowers.eval import predictions
from slimflowers.eval import sanity
from slimflowers.eval import tta as tta_lib
from slimflowers.eval import watch as eval_watch
from slimflowers.train import averaging
from slimflowers.train import early_stopping
from slimflowers.train import run_record

PROGRAM = "eval_image_classifier.py"
# The evaluator's defaults (eval_image_classifier.py's flags): global batch, and the continuous loop's
# look-again interval and how long it waits for a new checkpoint.
BATCH_SIZE = 100
EVAL_INTERVAL_SECS = eval_watch.EVAL_INTERVAL_SECS
EVAL_TIMEOUT_SECS = eval_watch.EVAL_TIMEOUT_SECS
# How often a waiting evaluator looks again (for a run to appear, for `finished`), at most.
WAIT_POLL_SECS = 2.0


def _resolve_paths(checkpoint_path, eval_dir, split_name, continuous, tta=tta_lib.NONE):
  """(train_dir, eval_dir, prefix or None) from the flags; errors that teach."""
  is_prefix = fileio.exists(checkpoint_path.removesuffix(".index") + ".index")
  if continuous and is_prefix:
    raise errors.BadValue(f"--continuous watches a directory but --checkpoint_path={checkpoint_path} is one "
                          "checkpoint. Pass its train_dir, or drop --continuous to evaluate it once.")
  train_dir = os.path.dirname(checkpoint_path) if is_prefix else checkpoint_path.rstrip("/")
  eval_dir = eval_dir or _eval_dir(train_dir, split_name, tta=tta)
  if fileio.abspath(eval_dir) == fileio.abspath(train_dir):
    raise errors.BadValue(f"--eval_dir={eval_dir} is the train_dir; the evaluator only writes into its own "
                          f"directory. Leave --eval_dir unset (default {run_dir.eval_dir(train_dir, split_name)}).")
  try:
    prefix = None if continuous else checkpoints.resolve_checkpoint(checkpoint_path)
  except errors.NotFound as e:
    if not fileio.isdir(checkpoint_path):
      raise
    raise errors.NotFound(f"{e} Or add --continuous to wait for its first checkpoint.") from e
  return train_dir, eval_dir, prefix


def _eval_dir(train_dir, split_name, *, best=False, tta=tta_lib.NONE):
  """eval_<split>[_best]/, with `_tta_<mode>` for a test-time augmented evaluation (never mixed with plain ones)."""
  return run_dir.eval_dir(train_dir, split_name, best=best) + ("" if tta == tta_lib.NONE else f"_tta_{tta}")


class _SplitEvaluation:
  """One split's data and exact evaluator over the shared model."""

  def __init__(self, strategy, model, *, dataset_name, dataset_dir, split_name, batch_size, image_size,
               preprocessing_name, tta=tta_lib.NONE):
    self.split = datasets.get_split(dataset_name, split_name, dataset_dir)
    self.dataset = input_pipeline.eval_dataset(self.split, batch_size=batch_size, image_size=image_size,
                                               preprocessing_name=preprocessing_name)
    self.evaluator = exact_eval.ExactEvaluator(model, self.dataset, strategy, num_classes=self.split.num_classes,
                                               global_batch_size=batch_size,
                                               expected_examples=self.split.num_samples, tta=tta)
    self._per_example = None

  def per_example(self, wanted=True):
    """The predictions.csv pass (file names and labels read from the records once), or None when not `wanted`."""
    if wanted and self._per_example is None:
      self._per_example = predictions.PerExample.for_split(self.split)
    return self._per_example if wanted else None


def run(strategy, **flags):
  """Evaluates as the flags say (see _run); a corrupted shard is one line naming it and the fix."""
  with datasets.shard_errors_named(flags.get("dataset_dir")):
    return _run(strategy, **flags)


def _run(strategy, *, checkpoint_path, dataset_name, dataset_dir, model_name=None, dataset_split_name="validation",
        eval_dir=None, preprocessing_name=None, eval_image_size=None, batch_size=BATCH_SIZE, use_ema=False,
        continuous=False, eval_interval_secs=EVAL_INTERVAL_SECS, eval_timeout_secs=EVAL_TIMEOUT_SECS,
        print_predictions=0, final_eval_splits=(), early_stopping_patience=0, early_stopping_min_delta=0.0,
        tta=tta_lib.NONE, keep_top_n=0, write_predictions=True):
  """Evaluates as the flags say; returns the result dicts recorded (all splits). Final evaluations write
  predictions.csv when `write_predictions` (one checkpoint, a run's final step, the final splits)."""
  tta = _check_options(batch_size, tta, early_stopping_patience, continuous)
  # ---------------- Where to look and where to write ----------------
  train_dir, eval_dir, prefix = _resolve_paths(checkpoint_path, eval_dir, dataset_split_name, continuous, tta)
  final_eval_splits = _other_final_splits(final_eval_splits, dataset_split_name)
  poll = min(eval_interval_secs, WAIT_POLL_SECS)
  if continuous:  # started beside its trainer, perhaps first: the run's record says what to build
    eval_watch.wait_for_run(train_dir, timeout_secs=eval_timeout_secs, interval_secs=poll)
  spec, image_size, preprocessing_name, overrides = model_source.resolve_model(
      train_dir, model_name, eval_image_size, preprocessing_name)

  # ---------------- Data and model ----------------
  def split_evaluation(split_name):
    return _SplitEvaluation(strategy, model, dataset_name=dataset_name, dataset_dir=dataset_dir,
                            split_name=split_name, batch_size=batch_size, image_size=image_size,
                            preprocessing_name=preprocessing_name, tta=tta)

  split = datasets.get_split(dataset_name, dataset_split_name, dataset_dir)
  run_record.check_dataset(train_dir, run_dir.read_run_info(train_dir), split, num_classes=(
      (checkpoints.read_model_config(prefix) or {}).get("num_classes") if prefix else None))
  for name in final_eval_splits:
    datasets.get_split(dataset_name, name, dataset_dir)  # fail now, not after hours of watching
  logging.info("Evaluating %s on %s/%s (%d examples, %d classes) at %d px, batch %d over %d replica(s)",
               spec.name, dataset_name, dataset_split_name, split.num_samples, split.num_classes,
               image_size, batch_size, strategy.num_replicas_in_sync)
  model = _build_model(strategy, spec, split.num_classes, overrides, image_size)
  main = split_evaluation(dataset_split_name)
  # Printing predictions reads the split with file names (host-side only: strings cannot go to a GPU).
  named = input_pipeline.eval_dataset(split, batch_size=batch_size, image_size=image_size,
                                      preprocessing_name=preprocessing_name,
                                      with_filenames=True) if print_predictions else None
  recorded = []
  warn_if_suspect = _suspect_warner(train_dir, continuous)

  # ---------------- One checkpoint, or every new checkpoint of the run ----------------
  with locks.DirLock(eval_dir, PROGRAM) as lock:
    outputs = eval_outputs.Outputs(eval_dir, class_names=_class_names(split))
    after_result = _after_each_result(train_dir, eval_dir, patience=early_stopping_patience,
                                      min_delta=early_stopping_min_delta, keep_top_n=keep_top_n)
    try:
      def evaluate_fn(path):
        wanted = write_predictions and (not continuous or _at_final_step(train_dir, path))
        result, _ = exact_eval.evaluate_checkpoint(path, main.evaluator, split_name=dataset_split_name, use_ema=use_ema,
                                                   outputs=outputs, per_example=main.per_example(wanted))
        recorded.append(result)
        warn_if_suspect(result)
        after_result(result)
        if print_predictions:
          print(exact_eval.format_predictions(exact_eval.predictions(model, named, print_predictions),
                                              split.labels_to_names), flush=True)
        lock.heartbeat()
        return result["step"]

      if continuous:
        main.evaluator.warm_up()  # trace now, not when the first checkpoint is waiting
        eval_watch.run_continuous(train_dir, evaluate_fn, done_steps=outputs.done_steps,
                                  eval_interval_secs=eval_interval_secs, eval_timeout_secs=eval_timeout_secs,
                                  heartbeat=lock.heartbeat)
      else:
        evaluate_fn(prefix)
    finally:
      outputs.close()

  # ---------------- The final splits: final and best checkpoints, in this process ----------------
  if final_eval_splits:
    final = _final_prefix(train_dir, prefix, continuous, outputs.done_steps, final_eval_splits,
                          eval_timeout_secs=eval_timeout_secs, poll_secs=poll)
    if final is not None:
      for name in final_eval_splits:
        recorded += _evaluate_final(train_dir, name, split_evaluation(name), final, eval_dir, use_ema, tta,
                                    write_predictions)
  return recorded


def _other_final_splits(final_eval_splits, dataset_split_name):
  """--final_eval_splits without the split this evaluator evaluates already (said once)."""
  if dataset_split_name in final_eval_splits:
    logging.warning("--final_eval_splits=%s: %s is the split this evaluator evaluates already (--dataset_split_name); "
                    "it is not evaluated twice.", ",".join(final_eval_splits), dataset_split_name)
  return [s for s in final_eval_splits if s != dataset_split_name]


def _check_options(batch_size, tta, early_stopping_patience, continuous):
  """The flags' values that cannot work, as errors that teach; returns the checked --tta mode."""
  if batch_size <= 0:
    raise errors.BadValue(f"--batch_size={batch_size} must be positive.")
  if early_stopping_patience and not continuous:
    raise errors.BadValue(f"--early_stopping_patience={early_stopping_patience} needs --continuous: it stops a "
                          "training run from the evaluations beside it.")
  with errors.as_user_errors():
    return tta_lib.check(tta)


def _after_each_result(train_dir, eval_dir, *, patience, min_delta, keep_top_n):
  """after(result) for each result of the watched split: early stopping's patience (which may write the stop
  request, slimflowers/train/early_stopping.py), then the --keep_top_n copies (slimflowers/train/averaging.py)."""
  stopper = early_stopping.Patience(train_dir, patience=patience, min_delta=min_delta,
                                    history=run_dir.read_results(eval_dir)) if patience else None
  keeper = averaging.TopKeeper(eval_dir, keep_top_n) if keep_top_n else None

  def after(result):
    if stopper is not None:
      stopper.observe(result)
    if keeper is not None:
      keeper.update(run_dir.read_results(eval_dir))

  return after


def _build_model(strategy, spec, num_classes, overrides, image_size):
  """The net under the strategy, built (a restore into unbuilt layers could be skipped silently)."""
  with strategy.scope():  # built without an auxiliary head (expect_partial ignores its variables)
    with errors.as_user_errors():
      model = nets.get_model(spec.name, num_classes, **overrides)
    if not model.built:
      model(tf.zeros([1, image_size, image_size, 3]), training=False)
  return model


def _suspect_warner(train_dir, continuous):
  """warn_if_suspect(result): one warning in the user's terms for a result at chance or far below training
  (slimflowers/eval/sanity.py): always for a one-off evaluation or the run's final step; beside training only
  once training itself has learned something (early checkpoints are at chance in every run)."""
  warned = []

  def warn_if_suspect(result):
    check = result.get("sanity")
    if not sanity.is_suspect(check):
      return
    final = not continuous or eval_watch.is_final_step(result["step"], run_dir.read_run_info(train_dir))
    if final or check.get("below_training") or sanity.training_learns(check):
      logging.warning("%s", sanity.warning(check, step=result["step"], split=result["split"],
                                           with_causes=not warned))
      warned.append(result["step"])

  return warn_if_suspect


def _final_prefix(train_dir, prefix, continuous, done_steps, final_eval_splits, *, eval_timeout_secs, poll_secs):
  """The checkpoint the final splits evaluate: the one given, else the finished run's final one (or None)."""
  what = f"--final_eval_splits={','.join(final_eval_splits)}"
  if prefix is not None:
    if not continuous and not _is_final(train_dir, prefix):
      logging.warning("%s: evaluating %s, the checkpoint given, which is not the final checkpoint of a finished "
                      "run (its results go to eval_<split>/ all the same).", what, os.path.basename(prefix))
    return prefix
  # The trainer writes `finished` right after its final checkpoint: when the watch ended on the final step,
  # wait for it (bounded), so the final splits are never skipped by a few seconds.
  done = max(done_steps, default=None)
  wait = eval_timeout_secs if done is not None and eval_watch.is_final_step(
      done, run_dir.read_run_info(train_dir)) else 0
  return _final_checkpoint(train_dir, what, wait_secs=wait, poll_secs=poll_secs)


def _class_names(split):
  return [split.labels_to_names[i] for i in range(split.num_classes)]


def _at_final_step(train_dir, prefix):
  """True when `prefix` is the last checkpoint the run will write (run_info.json; eval_watch.is_final_step)."""
  return eval_watch.is_final_step(checkpoints.read_global_step(prefix), run_dir.read_run_info(train_dir))


def _is_final(train_dir, prefix):
  info = run_dir.read_run_info(train_dir)
  return bool(info.get("finished")) and checkpoints.read_global_step(prefix) == info.get("final_step")


def _final_checkpoint(train_dir, what, *, wait_secs=0, poll_secs=WAIT_POLL_SECS):
  """The run's final checkpoint, waiting up to `wait_secs` for the run to say it finished; else None, after one
  line saying why the final splits (`what`) are not evaluated."""
  info = eval_watch.wait_for_finished(train_dir, timeout_secs=wait_secs, interval_secs=poll_secs)
  listed = {checkpoints.read_global_step(p): p for p in checkpoints.list_checkpoints(train_dir)}
  if not info.get("finished"):
    newest = f"its newest checkpoint is step {max(listed)}" if listed else "it has no checkpoint yet"
    logging.warning("%s not evaluated: the run in %s has not finished (%s of %s steps). Run the evaluator again "
                    "once training has finished.", what, train_dir, newest, info.get("max_steps", "?"))
    return None
  final = int(info["final_step"])
  if final not in listed:
    logging.warning("%s not evaluated: %s/%s says the run finished at step %d, but its final checkpoint ckpt-%d is "
                    "gone.", what, train_dir, run_dir.RUN_INFO, final, final)
    return None
  return listed[final]


def _evaluate_final(train_dir, split_name, evaluation, final_prefix, eval_dir, use_ema, tta=tta_lib.NONE,
                    write_predictions=True):
  """The final checkpoint -> eval_<split>/, the best one (eval_dir's best/) -> eval_<split>_best/; skips what is
  done.

  When the best checkpoint is the final one, its result is copied (same weights, same numbers) with
  `copied_from`, instead of a second pass over the split.
  """
  recorded = []
  final_dir = _eval_dir(train_dir, split_name, tta=tta)
  targets = [(final_dir, final_prefix, checkpoints.read_global_step(final_prefix))]
  best_dir = run_dir.best_dir(eval_dir)
  best = run_dir.read_best(eval_dir)
  if best.get("step") is not None:
    targets.append((_eval_dir(train_dir, split_name, best=True, tta=tta), checkpoints.resolve_checkpoint(best_dir),
                    int(best["step"])))
  else:
    logging.warning("No %s: the best checkpoint is not evaluated on %s.", best_dir, split_name)
  for out_dir, prefix, step in targets:
    if step in run_dir.evaluated_steps(out_dir):
      logging.info("Step %d is already evaluated on %s (%s).", step, split_name, out_dir)
      continue
    with locks.DirLock(out_dir, PROGRAM):
      same = [r for r in run_dir.read_results(final_dir) if int(r["step"]) == step] if out_dir != final_dir else []
      if same:
        row = dict(same[-1], checkpoint=prefix, copied_from=run_dir.results_path(final_dir))
        source = predictions.checked_path(final_dir, same[-1])
        if source is not None:  # the same predictions, beside the result they belong to
          fileio.write_bytes_atomic(os.path.join(out_dir, predictions.FILE), fileio.read_bytes(source))
        else:
          row.pop("predictions", None)
        fileio.append_line(run_dir.results_path(out_dir), json.dumps(row, sort_keys=True))
        logging.info("The best checkpoint is the final one (step %d): its %s result is reused -> %s", step,
                     split_name, out_dir)
        recorded.append(row)
        continue
      outputs = eval_outputs.Outputs(out_dir, keep_best=False, class_names=_class_names(evaluation.split))
      try:
        result, _ = exact_eval.evaluate_checkpoint(prefix, evaluation.evaluator, split_name=split_name,
                                                   use_ema=use_ema, outputs=outputs,
                                                   per_example=evaluation.per_example(write_predictions))
      finally:
        outputs.close()
      recorded.append(result)
  return recorded
