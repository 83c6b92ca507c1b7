"""Exact evaluation of checkpoints, once or continuously beside a running trainer.

    python eval_image_classifier.py --checkpoint_path=runs/cifarnet --dataset_name=synthetic_flowers \
        --dataset_dir=data/synthetic_flowers --model_name=cifarnet --continuous --num_gpus=0
    # one line per checkpoint, e.g.
    #   eval validation step 200: accuracy=0.8314 top_5_accuracy=1.0000 loss=0.4712 ... num_examples=350
    # then exits after the final checkpoint of the finished run.

Why a separate process: TF-Slim could only evaluate once; here the evaluator
watches `train_dir`, evaluates every checkpoint it sees (the newest when it
falls behind) and writes summaries on the training step axis, so TensorBoard
pointed at `train_dir` shows validation accuracy growing live. It only reads
`train_dir` and writes only into its own `eval_dir` (default `train_dir/eval_SPLIT`).

Exactness: the input pipeline pads the split with `mask=0` examples up to a
multiple of the global batch; each global batch is cut into one full batch per
replica (so no replica ever gets an empty batch, tensorflow/tensorflow#61231)
and every metric is a sum of per-example counts reduced with SUM (see
metrics.py). `num_examples` is checked against the split size.

Outputs per evaluated checkpoint (eval_dir):
  - TensorBoard scalars accuracy, top_5_accuracy, loss, mean_per_class_accuracy and
    image confusion_matrix at the checkpoint's global step;
  - one JSON line in results.jsonl (RESULT_KEYS plus wall_time, eval_secs, images_per_sec);
  - best/: a copy of the best checkpoint by accuracy (ties: the earliest step)
    with best.json, replaced atomically, read back on restart.
"""
import collections
import json
import os
import shutil
import time

from absl import logging
import numpy as np
import tensorflow as tf

from slimflowers import checkpoints
from slimflowers import fileio
from slimflowers import metrics

RESULT_KEYS = ("step", "checkpoint", "split", "num_examples", "accuracy", "top_5_accuracy", "loss",
               "mean_per_class_accuracy")
SCALAR_KEYS = ("accuracy", "top_5_accuracy", "loss", "mean_per_class_accuracy")
RESULTS_FILE = "results.jsonl"
BEST_DIR = "best"
BEST_FILE = "best.json"
# A checkpoint that fails to read this many times in a row is given up on (it is corrupt,
# not merely being written or rotated).
MAX_READ_FAILURES = 3


# Finding checkpoints: shared with the trainer's fine-tuning restore (slimflowers/checkpoints.py).
CheckpointUnreadable = checkpoints.CheckpointUnreadable
checkpoint_files = checkpoints.checkpoint_files
list_checkpoints = checkpoints.list_checkpoints
resolve_checkpoint = checkpoints.resolve_checkpoint
read_global_step = checkpoints.read_global_step
_number = checkpoints.checkpoint_number
read_run_info = checkpoints.read_run_info


def has_ema(prefix):
  return any(name.startswith("ema_model/") for name, _ in tf.train.list_variables(prefix))


def _run_max_steps(info):
  for source in (info, info.get("hparams") or {}):
    for key in ("max_steps", "max_number_of_steps"):
      if isinstance(source, dict) and source.get(key):
        return int(source[key])
  return None


def is_final_step(step, info):
  """True when `step` is the last checkpoint the run will write."""
  if info.get("finished") and info.get("final_step") is not None and step >= int(info["final_step"]):
    return True
  max_steps = _run_max_steps(info)
  return max_steps is not None and step >= max_steps


# ---------------------------------------------------------------------------
# Restoring
# ---------------------------------------------------------------------------

def restore(model, prefix, *, use_ema=False):
  """Reads `model` (or, with use_ema, the trainer's `ema_model`) from `prefix`; returns the global step.

  Raises CheckpointUnreadable for vanished / half-written / unreadable files and
  ValueError when the checkpoint does not fit the model (wrong --model_name or dataset).
  """
  step = read_global_step(prefix)
  key = "ema_model" if use_ema else "model"
  try:
    missing_ema = use_ema and not has_ema(prefix)
    if not missing_ema:
      status = tf.train.Checkpoint(**{key: model}).read(prefix).expect_partial()
      status.assert_existing_objects_matched()
  except tf.errors.OpError as e:
    raise CheckpointUnreadable(f"{prefix}: {type(e).__name__}: {e.message}") from e
  except (AssertionError, ValueError) as e:  # shapes or variables differ: a user error, not a race
    raise ValueError(f"Checkpoint {prefix} does not fit the model ({str(e)[:300]}). Check --model_name and "
                     "--dataset_name (number of classes) against the training run's flags.txt.") from e
  if missing_ema:
    raise ValueError(f"--use_ema but checkpoint {prefix} has no ema_model: training did not use "
                     "--moving_average_decay. Drop --use_ema or train with --moving_average_decay.")
  return step


# ---------------------------------------------------------------------------
# Exact evaluation
# ---------------------------------------------------------------------------

def _logits(outputs):
  return outputs["logits"] if isinstance(outputs, dict) else outputs


class ExactEvaluator:
  """Evaluates `model` on a padded dataset, distributed over `strategy`, exactly.

  `dataset` yields global batches {"image", "label", "mask"} of `global_batch_size`
  examples (the last one padded with mask=0, as input_pipeline.eval_dataset does).
  Each is re-cut into one full batch per replica.
  """

  def __init__(self, model, dataset, strategy, *, num_classes, global_batch_size,
               expected_examples=None, top_k=metrics.TOP_K):
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
      fixed = -(-global_batch_size // replicas) * replicas
      raise ValueError(f"--batch_size={global_batch_size} is not divisible by the {replicas} replicas; "
                       f"use a multiple of {replicas}, e.g. --batch_size={fixed}.")
    self.model = model
    self.dataset = dataset
    self.strategy = strategy
    self.num_classes = num_classes
    self.global_batch_size = global_batch_size
    self.expected_examples = expected_examples
    per_replica_batch = global_batch_size // replicas

    def dataset_fn(input_context):
      if input_context.num_input_pipelines > 1:
        raise ValueError("Evaluation runs on one machine: unset TF_CONFIG for eval_image_classifier.py "
                         "(exact multi-worker evaluation is not supported).")
      return dataset.rebatch(per_replica_batch) if replicas > 1 else dataset

    self._dist_dataset = strategy.distribute_datasets_from_function(dataset_fn)

    def replica_step(batch):
      labels = batch["label"]
      mask = batch["mask"] if "mask" in batch else tf.ones_like(labels)
      logits = _logits(model(batch["image"], training=False))
      return metrics.batch_counts(logits, labels, mask, num_classes, top_k)

    def step(batch):
      counts = strategy.run(replica_step, args=(batch,))
      return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in counts.items()}

    @tf.function
    def one_pass(dist_dataset):
      # The whole pass is one graph (no host round trip per batch); float64 sums stay exact.
      totals = {"confusion": tf.zeros([num_classes, num_classes], tf.float64),
                "top_k_correct": tf.zeros([], tf.float64), "loss_sum": tf.zeros([], tf.float64)}
      for batch in dist_dataset:
        counts = step(batch)
        totals = {k: totals[k] + tf.cast(counts[k], tf.float64) for k in totals}
      return totals

    self._one_pass = one_pass

  def evaluate(self):
    """One pass over the dataset; returns metrics.summarize(...) plus eval_secs and images_per_sec."""
    totals = metrics.Totals(self.num_classes)
    self._one_pass.get_concrete_function(self._dist_dataset)  # traces once, outside the timing
    start = time.perf_counter()
    totals.add(self._one_pass(self._dist_dataset))
    secs = time.perf_counter() - start
    result = totals.result()
    if self.expected_examples is not None and result["num_examples"] != self.expected_examples:
      raise RuntimeError(
          f"Counted {result['num_examples']} examples but the split has {self.expected_examples}: "
          "the eval dataset must yield every example once, padded with mask=0 to a multiple of the "
          "global batch.")
    result["eval_secs"] = secs
    result["images_per_sec"] = result["num_examples"] / max(secs, 1e-9)
    return result


def evaluate_model(model, dataset, strategy, **kwargs):
  """One-shot ExactEvaluator(model, dataset, strategy, **kwargs).evaluate()."""
  return ExactEvaluator(model, dataset, strategy, **kwargs).evaluate()


def predictions(model, dataset, n):
  """The first `n` real examples: [(filename or None, true label, predicted label, probability)]."""
  found = []
  for batch in dataset:
    probs = tf.nn.softmax(tf.cast(_logits(model(batch["image"], training=False)), tf.float32)).numpy()
    labels = batch["label"].numpy().reshape(-1)
    mask = batch["mask"].numpy().reshape(-1) if "mask" in batch else np.ones_like(labels)
    names = batch["filename"].numpy().reshape(-1) if "filename" in batch else [None] * len(labels)
    for i in np.flatnonzero(mask > 0):
      name = names[i].decode("utf-8", "replace") if isinstance(names[i], bytes) else names[i]
      pred = int(probs[i].argmax())
      found.append((name, int(labels[i]), pred, float(probs[i, pred])))
      if len(found) >= n:
        return found
  return found


def format_predictions(found, labels_to_names=None):
  names = labels_to_names or {}
  lines = []
  for filename, true, pred, p in found:
    mark = "" if true == pred else "  WRONG"
    head = f"{filename} " if filename else ""
    lines.append(f"{head}true={names.get(true, true)} pred={names.get(pred, pred)} (p={p:.2f}){mark}")
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# Outputs: summaries, results.jsonl, best/
# ---------------------------------------------------------------------------

def read_results(eval_dir):
  """The records of eval_dir/results.jsonl; a torn or corrupt line (killed writer) is skipped."""
  return [r for r in fileio.read_jsonl(os.path.join(eval_dir, RESULTS_FILE)) if "step" in r]


def format_result(result):
  keys = ("accuracy", "top_5_accuracy", "loss", "mean_per_class_accuracy")
  values = " ".join(f"{k}={result[k]:.4f}" for k in keys)
  speed = f", {result['images_per_sec']:.1f} img/s" if "images_per_sec" in result else ""
  return (f"eval {result['split']} step {result['step']}: {values} num_examples={result['num_examples']} "
          f"({os.path.basename(result['checkpoint'])}{speed})")


def _is_better(result, best):
  if best is None:
    return True
  if result["accuracy"] != best["metrics"]["accuracy"]:
    return result["accuracy"] > best["metrics"]["accuracy"]
  return result["step"] < best["step"]


class Outputs:
  """Writes everything the evaluator produces into eval_dir, and remembers what it wrote."""

  def __init__(self, eval_dir):
    self.eval_dir = eval_dir
    tf.io.gfile.makedirs(eval_dir)
    self.done_steps = {int(r["step"]) for r in read_results(eval_dir)}
    self._end_torn_line()
    self.best = self._read_best()
    self._writer = tf.summary.create_file_writer(eval_dir)

  def _end_torn_line(self):
    """Terminates a torn last line (killed writer) so the next record starts on its own line."""
    path = os.path.join(self.eval_dir, RESULTS_FILE)
    try:
      with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        torn = f.read(1) != b"\n"
    except (FileNotFoundError, OSError):
      return
    if torn:
      with open(path, "ab") as f:
        f.write(b"\n")

  def _read_best(self):
    path = os.path.join(self.eval_dir, BEST_DIR, BEST_FILE)
    try:
      with open(path, encoding="utf-8") as f:
        best = json.load(f)
      logging.info("Best so far: step %d, accuracy %.4f (%s)", best["step"], best["metrics"]["accuracy"], path)
      return best
    except FileNotFoundError:
      return None
    except (ValueError, KeyError, TypeError) as e:
      logging.warning("Ignoring unreadable %s (%s); best/ will be replaced by the next evaluation.", path, e)
      return None

  def record(self, result, confusion, *, model=None, use_ema=False):
    """Summaries + results.jsonl + console, then best/ when this checkpoint is the best so far."""
    step = int(result["step"])
    with self._writer.as_default(step=step):
      for key in SCALAR_KEYS:
        tf.summary.scalar(key, result[key])
      tf.summary.image("confusion_matrix", metrics.confusion_image(confusion),
                       description="Rows: true class, columns: prediction, row-normalized (dark = high).")
    self._writer.flush()
    fileio.append_line(os.path.join(self.eval_dir, RESULTS_FILE), json.dumps(result, sort_keys=True))
    self.done_steps.add(step)
    print(format_result(result), flush=True)  # the console line users watch (stdout; logs stay on stderr)
    if _is_better(result, self.best):
      self._save_best(result, model, use_ema)

  def _save_best(self, result, model, use_ema):
    prefix = result["checkpoint"]
    best = {"step": int(result["step"]), "checkpoint": prefix,
            "metrics": {k: result[k] for k in ("num_examples",) + SCALAR_KEYS}, "split": result["split"]}
    best_dir = os.path.join(self.eval_dir, BEST_DIR)
    name = os.path.basename(prefix)
    try:
      with fileio.atomic_dir(best_dir, replace=True) as tmp:  # best/ is the evaluator's own
        try:
          for path in checkpoint_files(prefix):
            shutil.copyfile(path, os.path.join(tmp, os.path.basename(path)))
          best["copied_from"] = "checkpoint files"
        except (CheckpointUnreadable, FileNotFoundError) as e:
          if model is None:
            raise
          # Rotated away while we evaluated it: the weights we evaluated are still in memory.
          logging.warning("%s vanished before it could be copied (%s); saving the evaluated weights instead.",
                          prefix, e)
          for leftover in os.listdir(tmp):
            os.remove(os.path.join(tmp, leftover))
          tf.train.Checkpoint(global_step=tf.Variable(best["step"], dtype=tf.int64),
                              **{"ema_model" if use_ema else "model": model}).write(os.path.join(tmp, name))
          best["copied_from"] = "evaluated weights (model only)"
        with open(os.path.join(tmp, "checkpoint"), "w", encoding="utf-8") as f:
          f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
        with open(os.path.join(tmp, BEST_FILE), "w", encoding="utf-8") as f:
          json.dump(best, f, indent=2, sort_keys=True)
          f.write("\n")
    except (CheckpointUnreadable, FileNotFoundError) as e:
      logging.warning("Could not keep %s as the best checkpoint (%s); best/ is unchanged.", prefix, e)
      return
    self.best = best
    logging.info("New best: step %d, accuracy %.4f -> %s", best["step"], result["accuracy"], best_dir)

  def close(self):
    self._writer.close()


# ---------------------------------------------------------------------------
# One checkpoint, or every checkpoint of a run
# ---------------------------------------------------------------------------

def evaluate_checkpoint(prefix, evaluator, *, split_name, use_ema=False, outputs=None):
  """Restores `prefix` into evaluator.model, evaluates, and (with `outputs`) records the result.

  Returns (result dict with RESULT_KEYS and extras, confusion matrix). Raises
  CheckpointUnreadable when the checkpoint vanished or is half-written.
  """
  step = restore(evaluator.model, prefix, use_ema=use_ema)
  full = evaluator.evaluate()
  confusion = full.pop("confusion_matrix")
  result = {"step": step, "checkpoint": prefix, "split": split_name, "wall_time": time.time(),
            "use_ema": bool(use_ema)}
  result.update(full)
  if outputs is not None:
    outputs.record(result, confusion, model=evaluator.model, use_ema=use_ema)
  return result, confusion


def run_continuous(train_dir, evaluate_fn, *, done_steps=(), eval_interval_secs=60, eval_timeout_secs=3600,
                   sleep=time.sleep, clock=time.monotonic):
  """Evaluates new checkpoints of `train_dir` as they appear; returns the steps evaluated.

  `evaluate_fn(prefix)` evaluates and records one checkpoint and returns its
  step; it may raise CheckpointUnreadable. Steps in `done_steps` (read from
  results.jsonl) are never re-evaluated, nor are checkpoints older than the
  newest evaluated one: when several new ones wait, only the newest is
  evaluated. Returns after the final step of a finished run, when the run
  is finished and nothing is left, or after `eval_timeout_secs` without a
  new checkpoint.
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
    info = read_run_info(train_dir)
    candidates = []
    for prefix in list_checkpoints(train_dir, warned):
      if failures[prefix] >= MAX_READ_FAILURES:
        continue
      if prefix not in steps:
        try:
          steps[prefix] = read_global_step(prefix)
        except CheckpointUnreadable as e:
          failures[prefix] += 1
          logging.warning("Skipping checkpoint (attempt %d of %d): %s", failures[prefix], MAX_READ_FAILURES, e)
          continue
      if steps[prefix] not in done and steps[prefix] > newest_done:
        candidates.append((steps[prefix], _number(prefix), prefix))
    if candidates:
      step, _, prefix = max(candidates)
      if len(candidates) > 1:
        logging.info("Behind training: evaluating the newest step %d, not the older %s.",
                     step, sorted(c[0] for c in candidates)[:-1])
      try:
        step = int(evaluate_fn(prefix))
      except CheckpointUnreadable as e:
        failures[prefix] += 1
        logging.warning("Skipping checkpoint that vanished or is half-written (attempt %d of %d): %s",
                        failures[prefix], MAX_READ_FAILURES, e)
        continue
      done.add(step)
      newest_done = max(newest_done, step)
      evaluated.append(step)
      last_progress = clock()
      if is_final_step(step, info) or is_final_step(step, read_run_info(train_dir)):
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


def run(strategy, *, checkpoint_path, dataset_name, dataset_dir, model_name, dataset_split_name="validation",
        eval_dir=None, preprocessing_name=None, eval_image_size=None, batch_size=100, use_ema=False,
        continuous=False, eval_interval_secs=60, eval_timeout_secs=3600, print_predictions=0):
  """The eval_image_classifier.py program: data, model, then one checkpoint or a continuous watch.

  Returns the list of result dicts recorded.
  """
  # Imported here so the exact-evaluation core above needs neither.
  import datasets  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  from slimflowers import input_pipeline  # pylint: disable=g-import-not-at-top

  if batch_size <= 0:
    raise ValueError(f"--batch_size={batch_size} must be positive.")
  # Where to look and where to write.
  is_prefix = tf.io.gfile.exists(checkpoint_path.removesuffix(".index") + ".index")
  if continuous and is_prefix:
    raise ValueError(f"--continuous watches a directory but --checkpoint_path={checkpoint_path} is one "
                     "checkpoint. Pass its train_dir, or drop --continuous to evaluate it once.")
  train_dir = os.path.dirname(checkpoint_path) if is_prefix else checkpoint_path.rstrip("/")
  eval_dir = eval_dir or os.path.join(train_dir, f"eval_{dataset_split_name}")
  if os.path.abspath(eval_dir) == os.path.abspath(train_dir):
    raise ValueError(f"--eval_dir={eval_dir} is the train_dir; the evaluator only writes into its own "
                     f"directory. Leave --eval_dir unset (default {train_dir}/eval_{dataset_split_name}).")
  prefix = None if continuous else resolve_checkpoint(checkpoint_path)

  # Data.
  split = datasets.get_split(dataset_name, dataset_split_name, dataset_dir)
  # Unset flags default to what the run trained with (run_info.json), then to the net's defaults.
  info = read_run_info(train_dir)
  trained = info.get("model_name")
  if model_name is None:
    if not trained:
      raise ValueError(f"--model_name is not set and {train_dir} has no run_info.json to take it from. "
                       "Pass --model_name (python -m nets lists them).")
    model_name = trained
  spec = nets.get_spec(model_name)
  if trained and trained != spec.name:
    raise ValueError(f"--model_name={model_name} but {train_dir}/run_info.json says the run trained "
                     f"{trained}. Pass --model_name={trained}.")
  image_size = eval_image_size or info.get("image_size") or spec.default_image_size
  preprocessing_name = preprocessing_name or info.get("preprocessing_name") or spec.preprocessing
  dataset = input_pipeline.eval_dataset(split, batch_size=batch_size, image_size=image_size,
                                        preprocessing_name=preprocessing_name)
  # Printing predictions reads the same split with file names (host-side only: strings cannot go to a GPU).
  named = input_pipeline.eval_dataset(split, batch_size=batch_size, image_size=image_size,
                                      preprocessing_name=preprocessing_name,
                                      with_filenames=True) if print_predictions else None
  logging.info("Evaluating %s on %s/%s (%d examples, %d classes) at %d px, batch %d over %d replica(s)",
               model_name, dataset_name, dataset_split_name, split.num_samples, split.num_classes,
               image_size, batch_size, strategy.num_replicas_in_sync)

  # Model: built without an auxiliary head (expect_partial ignores its variables).
  with strategy.scope():
    model = nets.get_model(model_name, split.num_classes)
    if not model.built:
      model(tf.zeros([1, image_size, image_size, 3]), training=False)
  evaluator = ExactEvaluator(model, dataset, strategy, num_classes=split.num_classes,
                             global_batch_size=batch_size, expected_examples=split.num_samples)
  outputs = Outputs(eval_dir)
  recorded = []

  def evaluate_fn(path):
    result, _ = evaluate_checkpoint(path, evaluator, split_name=dataset_split_name, use_ema=use_ema,
                                    outputs=outputs)
    recorded.append(result)
    if print_predictions:
      print(format_predictions(predictions(model, named, print_predictions), split.labels_to_names),
            flush=True)
    return result["step"]

  try:
    if continuous:
      run_continuous(train_dir, evaluate_fn, done_steps=outputs.done_steps,
                     eval_interval_secs=eval_interval_secs, eval_timeout_secs=eval_timeout_secs)
    else:
      evaluate_fn(prefix)
  finally:
    outputs.close()
  return recorded
