"""Exact evaluation of one model on one split: every example counted once, for any batch size and replica count.

    evaluator = exact_eval.ExactEvaluator(model, dataset, strategy, num_classes=5, global_batch_size=100,
                                          expected_examples=split.num_samples)
    result, confusion = exact_eval.evaluate_checkpoint("runs/x/ckpt-200", evaluator, split_name="validation")

Exactness: the input pipeline pads the split with `mask=0` examples up to a
multiple of the global batch; each global batch is cut into one full batch per
replica (so no replica ever gets an empty batch, tensorflow/tensorflow#61231)
and every metric is a sum of per-example counts reduced with SUM (see
metrics.py). `num_examples` is checked against the split size.

The outputs of an evaluation (summaries, results.jsonl, best/) are eval_outputs.py;
watching a training run is eval_watch.py; the eval_image_classifier.py program is
evaluate.py.
"""
import os
import time

import numpy as np
import tensorflow as tf

from slimflowers.core import checkpoints
from slimflowers.core import errors
from slimflowers.core import run_dir
from slimflowers.eval import metrics
from slimflowers.eval import sanity
from slimflowers.eval import tta as tta_lib

RESULT_KEYS = ("step", "checkpoint", "split", "num_examples") + metrics.EVAL_METRICS


def has_ema(prefix):
  return any(name.startswith(checkpoints.EMA_KEY + "/") for name in checkpoints.variable_names(prefix))


def restore(model, prefix, *, use_ema=False):
  """Reads `model` (or, with use_ema, the trainer's `ema_model`) from `prefix`; returns the global step.

  Raises CheckpointUnreadable for vanished / half-written / unreadable files and
  errors.BadValue when the checkpoint does not fit the model (wrong --model_name or dataset).
  """
  step = checkpoints.read_global_step(prefix)
  key = checkpoints.weights_key(use_ema)
  try:
    missing_ema = use_ema and not has_ema(prefix)
    if not missing_ema:
      status = tf.train.Checkpoint(**{key: model}).read(prefix).expect_partial()
      status.assert_existing_objects_matched()
  except tf.errors.OpError as e:
    raise checkpoints.CheckpointUnreadable(f"{prefix}: {type(e).__name__}: {e.message}") from e
  except (AssertionError, ValueError) as e:  # shapes or variables differ: a user error, not a race
    raise errors.BadValue(f"Checkpoint {prefix} does not fit the model ({str(e)[:300]}). Check --model_name and "
                          f"--dataset_name (number of classes) against the training run's {run_dir.FLAGS_TXT}.") from e
  if missing_ema:
    raise errors.BadValue(f"--use_ema but checkpoint {prefix} has no ema_model: training did not use "
                          "--moving_average_decay. Drop --use_ema or train with --moving_average_decay.")
  return step


def read_train_accuracy(prefix):
  """The trainer's batch accuracy before it saved `prefix` (train.py), or None (older checkpoints, mixup)."""
  try:
    reader = checkpoints.checkpoint_reader(prefix)
    if reader.has_tensor(sanity.TRAIN_ACCURACY_KEY):
      value = float(reader.get_tensor(sanity.TRAIN_ACCURACY_KEY))
      return value if value >= 0 else None
  except tf.errors.OpError:
    pass
  return None


def inference_logits(model, images):
  """The model's main logits for `images` in inference mode, as float32 (also under mixed precision)."""
  return tf.cast(tta_lib.logits_of(model(images, training=False)), tf.float32)


class ExactEvaluator:
  """Evaluates `model` on a padded dataset, distributed over `strategy`, exactly.

  `dataset` yields global batches {"image", "label", "mask"} of `global_batch_size`
  examples (the last one padded with mask=0, as input_pipeline.eval_dataset does).
  Each is re-cut into one full batch per replica.
  """

  def __init__(self, model, dataset, strategy, *, num_classes, global_batch_size,
               expected_examples=None, top_k=metrics.TOP_K, tta=tta_lib.NONE):
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
      fixed = -(-global_batch_size // replicas) * replicas
      raise errors.BadValue(f"--batch_size={global_batch_size} is not divisible by the {replicas} replicas; "
                            f"use a multiple of {replicas}, e.g. --batch_size={fixed}.")
    self.model = model
    self.tta = tta_lib.check(tta)  # test-time augmentation (slimflowers/eval/tta.py): logits averaged over views
    self.dataset = dataset
    self.strategy = strategy
    self.num_classes = num_classes
    self.global_batch_size = global_batch_size
    self.expected_examples = expected_examples
    per_replica_batch = global_batch_size // replicas

    def dataset_fn(input_context):
      if input_context.num_input_pipelines > 1:
        raise errors.BadValue("Evaluation runs on one machine: unset TF_CONFIG for eval_image_classifier.py "
                              "(exact multi-worker evaluation is not supported).")
      return dataset.rebatch(per_replica_batch) if replicas > 1 else dataset

    self._dist_dataset = strategy.distribute_datasets_from_function(dataset_fn)

    def replica_step(batch):
      labels = batch["label"]
      mask = batch["mask"] if "mask" in batch else tf.ones_like(labels)
      logits = tta_lib.logits(model, batch["image"], self.tta)
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

  def warm_up(self):
    """Traces the evaluation pass (seconds for a big net), e.g. while waiting for the first checkpoint."""
    self._one_pass.get_concrete_function(self._dist_dataset)

  def evaluate(self):
    """One pass over the dataset; returns metrics.summarize(...) plus eval_secs and images_per_sec."""
    totals = metrics.Totals(self.num_classes)
    self.warm_up()  # traces once (a no-op after the first call), outside the timing
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


def evaluate_checkpoint(prefix, evaluator, *, split_name, use_ema=False, outputs=None, per_example=None):
  """Restores `prefix` into evaluator.model, evaluates, and (with `outputs`) records the result.

  With `per_example` (a predictions.PerExample), the same pass keeps every example's prediction and, with
  `outputs`, writes predictions.csv into its eval_dir before the results.jsonl row that names it.
  Returns (result dict with RESULT_KEYS and extras, confusion matrix). Raises
  CheckpointUnreadable when the checkpoint vanished or is half-written.
  """
  step = restore(evaluator.model, prefix, use_ema=use_ema)
  full = per_example.evaluate(evaluator) if per_example is not None else evaluator.evaluate()
  confusion = full.pop("confusion_matrix")
  result = {"step": step, "checkpoint": prefix, "split": split_name, "wall_time": time.time(),
            "use_ema": bool(use_ema), "tta": evaluator.tta, "tta_views": tta_lib.VIEWS[evaluator.tta]}
  result.update(full)
  result["sanity"] = sanity.assess(confusion, read_train_accuracy(prefix))
  if outputs is not None and per_example is not None:
    result["predictions"] = per_example.write(outputs.eval_dir)
  if outputs is not None:
    outputs.record(result, confusion, model=evaluator.model, use_ema=use_ema)
  return result, confusion


def format_result(result):
  values = " ".join(f"{k}={result[k]:.4f}" for k in metrics.EVAL_METRICS)
  speed = f", {result['images_per_sec']:.1f} img/s" if "images_per_sec" in result else ""
  if result.get("tta", tta_lib.NONE) != tta_lib.NONE:
    speed += f", tta={result['tta']}: {result['tta_views']} views"
  return (f"eval {result['split']} step {result['step']}: {values} num_examples={result['num_examples']} "
          f"({os.path.basename(result['checkpoint'])}{speed})")


def predictions(model, dataset, n):
  """The first `n` real examples: [(filename or None, true label, predicted label, probability)]."""
  found = []
  for batch in dataset:
    probs = tf.nn.softmax(inference_logits(model, batch["image"])).numpy()
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
