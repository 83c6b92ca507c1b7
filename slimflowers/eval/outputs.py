"""Everything an evaluator writes into its eval_dir, and what it reads back on restart.

    outputs = eval_outputs.Outputs("runs/x/eval_validation")
    exact_eval.evaluate_checkpoint(prefix, evaluator, split_name="validation", outputs=outputs)
    outputs.close()

Per evaluated checkpoint, in this order:
  1. TensorBoard scalars (metrics.EVAL_METRICS) and the confusion-matrix image at the
     checkpoint's global step;
  2. best/ when this checkpoint is the best so far (accuracy; ties: the earliest step):
     a copy of the checkpoint files, a `checkpoint` state file and best.json (written
     last: it says which copy is current; older copies are removed after);
  3. one JSON line in results.jsonl (exact_eval.RESULT_KEYS plus wall_time, eval_secs,
     images_per_sec);
  4. the console line.
best/ is written before results.jsonl so that a kill between the two cannot lose it: the
restart re-evaluates the step (it is not in results.jsonl yet). A directory left by an
older version, or by a best/ copy that failed, is reconciled on start: when results.jsonl
has a better step than best.json, best/ is re-made from that checkpoint if it still exists.
Works on any TensorFlow filesystem (no directory renames).
"""
import json
import os

from absl import logging
import tensorflow as tf

from slimflowers.core import checkpoints
from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.eval import exact as exact_eval
from slimflowers.eval import metrics

# What a killed evaluator (or a killed TF checkpoint write) leaves in eval_dir and best/.
LEFTOVERS = ("*" + fileio.TMP_MARK + "*", "*_temp")


def is_better(result, best):
  """Higher accuracy wins; on a tie the earlier step stays best. A result at chance is never best: best/ holds no
  checkpoint that is no better than chance (slimflowers/eval/sanity.py), so nothing presents one as a result."""
  if (result.get("sanity") or {}).get("at_chance"):
    return False
  if best is None:
    return True
  if result["accuracy"] != best["metrics"]["accuracy"]:
    return result["accuracy"] > best["metrics"]["accuracy"]
  return result["step"] < best["step"]


def _best_record(result):
  record = {"step": int(result["step"]), "checkpoint": result["checkpoint"], "split": result["split"],
             "metrics": {k: result[k] for k in ("num_examples",) + metrics.EVAL_METRICS}}
  if result.get("sanity"):
    record["sanity"] = result["sanity"]
  return record


class Outputs:
  """Writes everything the evaluator produces into eval_dir, and remembers what it wrote.

  `keep_best=False`: no best/ (an evaluation of a run's final or best checkpoint on another split).
  `class_names`: the confusion matrix's labels.
  """

  def __init__(self, eval_dir, keep_best=True, class_names=None):
    self.eval_dir = eval_dir
    self.keep_best = keep_best
    self.class_names = class_names  # the confusion matrix's labels (numbers when None)
    self.best_dir = run_dir.best_dir(eval_dir)
    fileio.makedirs(eval_dir)
    fileio.remove_leftovers(eval_dir, LEFTOVERS, what="a killed evaluator")
    fileio.remove_leftovers(self.best_dir, LEFTOVERS, what="a killed evaluator")
    results = run_dir.read_results(eval_dir)
    self.done_steps = {int(r["step"]) for r in results}
    self.best = (run_dir.read_best(eval_dir) or None) if keep_best else None
    if self.best and not (isinstance(self.best.get("metrics"), dict) and "accuracy" in self.best["metrics"]):
      logging.warning("Ignoring %s without metrics; best/ will be replaced by the next evaluation.", self.best_dir)
      self.best = None
    if self.best:
      logging.info("Best so far: step %d, accuracy %.4f (%s)", self.best["step"], self.best["metrics"]["accuracy"],
                   self.best_dir)
    if keep_best:
      self._reconcile_best(results)
    self._writer = tf.summary.create_file_writer(eval_dir)

  def _reconcile_best(self, results):
    """Re-makes best/ when results.jsonl knows a better checkpoint than best.json (see the module doc)."""
    scored = [r for r in results if isinstance(r.get("accuracy"), (int, float)) and "checkpoint" in r
              and not (r.get("sanity") or {}).get("at_chance")]
    if not scored:
      return
    top = max(scored, key=lambda r: (r["accuracy"], -int(r["step"])))
    top = {**top, "step": int(top["step"])}
    if not is_better(top, self.best):
      return
    logging.warning("best/ is behind %s (a killed evaluator?): restoring it from step %d.", run_dir.RESULTS_FILE,
                      top["step"])
    self._save_best(top, model=None, use_ema=False)

  def record(self, result, confusion, *, model=None, use_ema=False):
    """Summaries, best/ (when this checkpoint is the best so far), results.jsonl, console: in that order."""
    step = int(result["step"])
    with self._writer.as_default(step=step):
      for key in metrics.EVAL_METRICS:
        tf.summary.scalar(key, result[key])
      tf.summary.image("confusion_matrix",
                       metrics.confusion_image(confusion, self.class_names, title=f"{result['split']}, step {step}"),
                       description="Rows: the true class, columns: the prediction; each cell's colour is its share "
                       "of the row, its number the count of images.")
    self._writer.flush()
    if self.keep_best and is_better(result, self.best):
      self._save_best(result, model, use_ema)
    fileio.append_line(run_dir.results_path(self.eval_dir), json.dumps(result, sort_keys=True))
    self.done_steps.add(step)
    print(exact_eval.format_result(result), flush=True)  # the line users watch (stdout, like the project's log)

  def _save_best(self, result, model, use_ema):
    """Copies the checkpoint into best/ (or, if it was rotated away, saves the evaluated weights)."""
    prefix = result["checkpoint"]
    best = _best_record(result)
    name = os.path.basename(prefix)
    fileio.makedirs(self.best_dir)
    kept = set()
    try:
      try:
        for path in checkpoints.checkpoint_files(prefix):
          fileio.copy(path, os.path.join(self.best_dir, os.path.basename(path)))
        best["copied_from"] = "checkpoint files"
      except (checkpoints.CheckpointUnreadable, FileNotFoundError, tf.errors.NotFoundError) as e:
        if model is None:
          raise checkpoints.CheckpointUnreadable(str(e)) from e
        # Rotated away while we evaluated it: the weights we evaluated are still in memory.
        logging.warning("%s vanished before it could be copied (%s); saving the evaluated weights instead.",
                        prefix, e)
        tf.train.Checkpoint(global_step=tf.Variable(best["step"], dtype=tf.int64),
                            **{checkpoints.weights_key(use_ema): model}).write(
                                os.path.join(self.best_dir, name))
        best["copied_from"] = "evaluated weights (model only)"
      kept = {os.path.basename(p) for p in checkpoints.checkpoint_files(os.path.join(self.best_dir, name))}
      # The state file tf.train.latest_checkpoint(best/) reads. Written by hand: a CheckpointManager would
      # need the run's object graph and would manage (delete) checkpoints itself; here it is a plain copy.
      fileio.write_text_atomic(os.path.join(self.best_dir, "checkpoint"),
                               f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
      fileio.write_json_atomic(os.path.join(self.best_dir, run_dir.BEST_FILE), best)  # last: now it is current
    except (checkpoints.CheckpointUnreadable, FileNotFoundError, tf.errors.NotFoundError) as e:
      logging.warning("Could not keep %s as the best checkpoint (%s); best/ is unchanged.", prefix, e)
      return
    for old in fileio.listdir(self.best_dir):  # the previous best's files
      if old not in kept | {"checkpoint", run_dir.BEST_FILE}:
        fileio.remove(os.path.join(self.best_dir, old))
    self.best = best
    logging.info("New best: step %d, accuracy %.4f -> %s", best["step"], result["accuracy"], self.best_dir)

  def close(self):
    self._writer.close()
