"""Exact streaming classification metrics: counts per batch, summed across replicas and batches.

    counts = metrics.batch_counts(logits, labels, mask, num_classes)   # inside strategy.run
    totals = metrics.Totals(num_classes)
    totals.add(strategy_reduced_counts)                                  # once per step, on the host
    print(totals.result())   # {"num_examples": 350, "accuracy": 0.83, "top_5_accuracy": 1.0, ...}

Why counts and not Keras metrics: an accuracy averaged per batch (or per replica)
is wrong whenever batches differ in size, which they do at the end of a split and
across replicas. Every quantity here is a sum of per-example terms (a confusion
matrix, a number of top-k hits, a sum of losses), so summing with
`ReduceOp.SUM` across replicas and then across batches gives the same number
for any batch size and any replica count. Padding examples carry `mask=0` and
add nothing. Per-batch counts are float32 (exact for integers below 2**24, far
above any batch); the running totals live on the host in int64 / float64.
"""
import numpy as np
import tensorflow as tf

TOP_K = 5
# The evaluator's metrics: summary tags, results.jsonl keys, report and HParams columns.
EVAL_METRICS = ("accuracy", "top_5_accuracy", "loss", "mean_per_class_accuracy")
# The trainer's scalar summaries (train_dir/train/).
TRAIN_METRICS = ("total_loss", "cross_entropy", "regularization_loss", "learning_rate", "accuracy", "gradient_norm",
                 "images_per_sec", "sec_per_step", "steps_per_hour")
SPEED_METRICS = ("images_per_sec", "sec_per_step", "steps_per_hour")


def effective_top_k(num_classes, k=TOP_K):
  """Top-k with k clipped to the number of classes (top-5 of a 3-class problem is top-3)."""
  return max(1, min(int(k), int(num_classes)))


def batch_counts(logits, labels, mask, num_classes, top_k=TOP_K):
  """Per-batch sums for one replica: {"confusion" [C, C], "top_k_correct", "loss_sum"}, all float32.

  `logits` [B, C], `labels` int [B], `mask` [B] (1 = real example, 0 = padding).
  Top-1 is the argmax prediction (the confusion matrix's diagonal). Top-k counts
  a hit when fewer than k classes score strictly higher than the true class
  (`tf.math.in_top_k`, so ties at the boundary count as hits).
  """
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
  mask = tf.cast(tf.reshape(mask, [-1]), tf.float32)
  predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
  confusion = tf.math.confusion_matrix(
      labels, predictions, num_classes=num_classes, weights=mask, dtype=tf.float32)
  hits = tf.cast(tf.math.in_top_k(labels, logits, effective_top_k(num_classes, top_k)), tf.float32)
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  # tf.where, not a product: a padding example with a non-finite loss must add 0, not NaN.
  loss_sum = tf.reduce_sum(tf.where(mask > 0, losses * mask, 0.0))
  return {"confusion": confusion, "top_k_correct": tf.reduce_sum(hits * mask), "loss_sum": loss_sum}


class Totals:
  """Running host-side sums of `batch_counts` (already reduced across replicas)."""

  def __init__(self, num_classes):
    self.num_classes = int(num_classes)
    self.confusion = np.zeros([self.num_classes, self.num_classes], np.int64)
    self.top_k_correct = 0
    self.loss_sum = 0.0

  def add(self, counts):
    """Adds one step's counts (tensors or arrays)."""
    self.confusion += np.rint(np.asarray(counts["confusion"], np.float64)).astype(np.int64)
    self.top_k_correct += int(np.rint(float(counts["top_k_correct"])))
    self.loss_sum += float(counts["loss_sum"])

  def result(self):
    return summarize(self.confusion, self.top_k_correct, self.loss_sum)


def summarize(confusion, top_k_correct, loss_sum):
  """The metrics dict from summed counts.

  Keys: num_examples, accuracy, top_5_accuracy, loss, mean_per_class_accuracy
  (the mean over classes present in the split of each class's recall),
  per_class_accuracy (list, None for absent classes), confusion_matrix
  (int64 [C, C], rows = true class, columns = prediction).
  """
  confusion = np.asarray(confusion, np.int64)
  num = int(confusion.sum())
  if num == 0:
    raise ValueError("No examples were evaluated (every mask was 0): the split is empty. "
                     "Check --dataset_dir and --dataset_split_name.")
  per_class_total = confusion.sum(axis=1)
  present = per_class_total > 0
  per_class = np.diag(confusion)[present] / per_class_total[present]
  per_class_list = [None] * confusion.shape[0]
  for c, acc in zip(np.flatnonzero(present), per_class):
    per_class_list[int(c)] = float(acc)
  return {
      "num_examples": num,
      "accuracy": float(np.trace(confusion) / num),
      "top_5_accuracy": float(top_k_correct / num),
      "loss": float(loss_sum / num),
      "mean_per_class_accuracy": float(per_class.mean()),
      "per_class_accuracy": per_class_list,
      "confusion_matrix": confusion,
  }


def numpy_metrics(logits, labels, top_k=TOP_K):
  """Reference implementation on the whole split at once (tests and sanity checks)."""
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels, np.int64)
  num_classes = logits.shape[1]
  confusion = np.zeros([num_classes, num_classes], np.int64)
  np.add.at(confusion, (labels, logits.argmax(axis=1)), 1)
  true_logit = logits[np.arange(len(labels)), labels]
  hits = (logits > true_logit[:, None]).sum(axis=1) < effective_top_k(num_classes, top_k)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  loss_sum = -log_probs[np.arange(len(labels)), labels].sum()
  return summarize(confusion, int(hits.sum()), float(loss_sum))


def confusion_image(confusion, max_size=512):
  """Renders a row-normalized confusion matrix as a uint8 image tensor [1, H, W, 3] for tf.summary.image.

  Row i is the true class i, so each row shows where that class's examples went:
  a perfect classifier is a dark diagonal on white. Each cell is a square of
  max(1, max_size // C) pixels so small class counts stay visible.
  """
  confusion = np.asarray(confusion, np.float64)
  rows = confusion.sum(axis=1, keepdims=True)
  normalized = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
  cell = max(1, max_size // max(1, confusion.shape[0]))
  normalized = np.kron(normalized, np.ones([cell, cell]))
  # White (0) -> dark blue (1), a colormap that needs no matplotlib.
  white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
  rgb = white + normalized[..., None] * (blue - white)
  return tf.constant(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)[None])
