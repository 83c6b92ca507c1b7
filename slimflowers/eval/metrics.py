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

from slimflowers.core.run_dir import EVAL_METRICS  # pylint: disable=unused-import  (the names this module computes)

TOP_K = 5


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


# Up to this many classes the axes carry class names and every non-zero cell its count; above, the axes carry class
# numbers, a legend lists them with their names, and the colour scale alone shows the cells.
CONFUSION_NAMED_CLASSES = 20


def row_shares(confusion):
  """Each cell's share of its row (the true class's images): the confusion image's colours; 0 for an absent class."""
  confusion = np.asarray(confusion, np.float64)
  rows = confusion.sum(axis=1, keepdims=True)
  return np.divide(confusion, rows, out=np.zeros(confusion.shape, np.float64), where=rows > 0)


def confusion_image(confusion, class_names=None, title=None):
  """The confusion matrix as TensorBoard shows it: a uint8 image tensor [1, H, W, 3] for tf.summary.image.

  Rows are the true classes, columns the predictions, each cell coloured by its share of the true class's
  images (a colour bar says so) and, up to CONFUSION_NAMED_CLASSES classes, labelled with its count; the
  axes carry the class names (class numbers and a legend beyond that). Drawn with matplotlib's Agg canvas
  (no display, no global pyplot state).
  """
  import io  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  confusion = np.asarray(confusion, np.int64)
  k = confusion.shape[0]
  names = [str(n) for n in class_names] if class_names is not None and len(class_names) == k else [str(i) for i in
                                                                                                     range(k)]
  share = row_shares(confusion)
  named = k <= CONFUSION_NAMED_CLASSES
  side = min(12.0, 2.5 + 0.4 * k) if named else min(14.0, 4.0 + 0.08 * k)
  columns = 5
  per_column = -(-k // columns)
  legend_height = 0.0 if named else 0.16 * per_column + 0.4
  fig = Figure(figsize=(side + 1.5, side + 1.0 + legend_height), dpi=72, layout="constrained")
  grid = fig.add_gridspec(2 if legend_height else 1, 1, height_ratios=[side + 1.0, legend_height] if legend_height
                          else [1])
  ax = fig.add_subplot(grid[0])
  image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
  colorbar.set_label("share of the true class (row)", fontsize=12)
  ticks = np.arange(k) if named or k <= 40 else np.arange(0, k, 5)
  labels = [names[i] for i in ticks] if named else [str(i) for i in ticks]
  ax.set_xticks(ticks, labels, rotation=45 if named else 90, ha="right" if named else "center",
                fontsize=12 if named else 8)
  ax.set_yticks(ticks, labels, fontsize=12 if named else 8)
  ax.set_xlabel("predicted class", fontsize=12)
  ax.set_ylabel("true class", fontsize=12)
  total = int(confusion.sum())
  accuracy = np.trace(confusion) / total if total else 0.0
  ax.set_title((title + "\n" if title else "") + f"{total:,} images, {100 * accuracy:.1f} % on the diagonal",
               fontsize=12)
  if named:
    for (i, j), count in np.ndenumerate(confusion):
      if count:
        ax.text(j, i, f"{count:,}", ha="center", va="center", fontsize=12 if k <= 10 else 9,
                color="white" if share[i, j] > 0.5 else "black")
  else:  # the legend: class number -> name
    legend = fig.add_subplot(grid[1])
    legend.axis("off")
    for c in range(columns):
      lines = [f"{i:>3}  {names[i][:20]}" for i in range(c * per_column, min(k, (c + 1) * per_column))]
      legend.text(c / columns, 1.0, "\n".join(lines), fontsize=8, family="monospace", va="top",
                  transform=legend.transAxes)
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", bbox_inches="tight")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top,redefined-outer-name,reimported
  return tf.image.decode_png(buffer.getvalue(), channels=3)[None]
