"""predictions.csv: which examples a checkpoint got right, one row per example, from the exact evaluation pass.

    per_example = predictions.PerExample.for_split(split)             # file names and labels, in record order
    result, _ = exact.evaluate_checkpoint(prefix, evaluator, split_name="test", outputs=outputs,
                                          per_example=per_example)
    # EVAL_DIR/predictions.csv written (temporary name, then renamed), before the results.jsonl row that names it
    rows = predictions.read(os.path.join(eval_dir, "predictions.csv"))  # {"filename": [...], "label": array, ...}

The file (the contract other tools read):
  filename,label,prediction,probability,label_probability,top1,top1_probability,...,topK,topK_probability
one row per real example of the split, exactly once, in record order; `label`, `prediction` and `topN` are class
ids (names in the dataset's labels.txt), `probability` is the softmax probability of the prediction,
`label_probability` that of the true label, K = min(5, number of classes); floats with 6 significant digits.

Why in the counting pass and not a second one: the same padded, masked batches are read once; each step also
returns the per-example softmax of every replica (host-side, one round trip per batch instead of one graph for the
whole pass), and the counts are checked against the rows. The rows' order is the records' order (the eval dataset
is deterministic and a global batch is cut into consecutive per-replica batches, replica 0 first); the labels read
back from the records are checked against the labels of the pass, so a wrong order is an error, not a wrong file.

The results.jsonl row of the evaluation names the file with its checksum (`predictions`: {file, sha256, rows}), so a
reader knows which checkpoint's predictions it holds (a later evaluation replaces it).
"""
import csv
import hashlib
import io
import os

import numpy as np

from slimflowers.core import fileio
from slimflowers.eval import metrics

FILE = "predictions.csv"
TOP_K = metrics.TOP_K
SIGNIFICANT_DIGITS = 6


def header(num_classes):
  k = metrics.effective_top_k(num_classes, TOP_K)
  columns = ["filename", "label", "prediction", "probability", "label_probability"]
  for i in range(1, k + 1):
    columns += [f"top{i}", f"top{i}_probability"]
  return columns


def _float(value):
  return f"{float(value):.{SIGNIFICANT_DIGITS}g}"


def top_classes(probabilities, predictions=None):
  """[N, K] class ids by decreasing probability (ties: the lower id first); with `predictions` (the evaluator's
  argmax of the logits) each row starts with the prediction, so the file agrees with the counted confusion matrix
  even where two classes' probabilities round to the same float."""
  probabilities = np.asarray(probabilities, np.float64)
  k = metrics.effective_top_k(probabilities.shape[1], TOP_K)
  order = np.argsort(-probabilities, axis=1, kind="stable")
  if predictions is None:
    return order[:, :k]
  predictions = np.asarray(predictions, np.int64)
  rest = order[order != predictions[:, None]].reshape(len(order), -1)
  return np.concatenate([predictions[:, None], rest], axis=1)[:, :k]


def format_csv(filenames, labels, probabilities, predictions=None):
  """The file's text from per-example softmax probabilities [N, C] (and the argmax predictions, see top_classes)."""
  probabilities = np.asarray(probabilities, np.float64)
  labels = np.asarray(labels, np.int64)
  n = len(labels)
  order = top_classes(probabilities, predictions)
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(header(probabilities.shape[1]))
  for i in range(n):
    top = order[i]
    row = [filenames[i], int(labels[i]), int(top[0]), _float(probabilities[i, top[0]]),
           _float(probabilities[i, labels[i]])]
    for c in top:
      row += [int(c), _float(probabilities[i, c])]
    writer.writerow(row)
  return out.getvalue()


def write(eval_dir, filenames, labels, probabilities, predictions=None):
  """Writes EVAL_DIR/predictions.csv (temporary name, renamed when complete; any filesystem); returns the record
  the results.jsonl row carries: {"file", "sha256", "rows"}."""
  data = format_csv(filenames, labels, probabilities, predictions).encode("utf-8")
  fileio.write_bytes_atomic(os.path.join(eval_dir, FILE), data)
  return {"file": FILE, "sha256": hashlib.sha256(data).hexdigest(), "rows": int(len(labels))}


def read(path):
  """{"filename": [str], "label", "prediction" int arrays, "probability", "label_probability" float arrays,
  "top": int [N, K], "top_probability": float [N, K]}; ValueError naming the file when it is not one."""
  text = fileio.read_text(path)
  reader = csv.reader(io.StringIO(text))
  try:
    columns = next(reader)
  except StopIteration as e:
    raise ValueError(f"{path} is empty: not a predictions file ({','.join(header(2))},...).") from e
  if columns[:5] != header(2)[:5] or len(columns) < 7:
    raise ValueError(f"{path} does not start with the predictions header ({','.join(header(2)[:7])},...): "
                     f"{','.join(columns[:7])}")
  rows = [r for r in reader if r]
  k = (len(columns) - 5) // 2
  try:
    return {
        "filename": [r[0] for r in rows],
        "label": np.array([int(r[1]) for r in rows], np.int64),
        "prediction": np.array([int(r[2]) for r in rows], np.int64),
        "probability": np.array([float(r[3]) for r in rows], np.float64),
        "label_probability": np.array([float(r[4]) for r in rows], np.float64),
        "top": np.array([[int(r[5 + 2 * j]) for j in range(k)] for r in rows], np.int64).reshape(len(rows), k),
        "top_probability": np.array([[float(r[6 + 2 * j]) for j in range(k)] for r in rows],
                                    np.float64).reshape(len(rows), k),
    }
  except (ValueError, IndexError) as e:
    raise ValueError(f"{path}: a row that does not fit the header ({e}).") from e


def checked_path(eval_dir, row):
  """EVAL_DIR/predictions.csv when results.jsonl's `row` names it and the file is the one it names (checksum);
  else None (no predictions for that evaluation, or a later evaluation replaced the file)."""
  record = (row or {}).get("predictions")
  if not isinstance(record, dict) or not record.get("file"):
    return None
  path = os.path.join(eval_dir, record["file"])
  try:
    data = fileio.read_bytes(path)
  except (OSError, fileio._not_found_error()):  # pylint: disable=protected-access
    return None
  return path if hashlib.sha256(data).hexdigest() == record.get("sha256") else None


def read_records(split):
  """(file names, labels) of the split's real examples in the order the eval dataset reads them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from datasets import records  # pylint: disable=g-import-not-at-top
  names, labels = [], []
  ds = tf.data.TFRecordDataset(split.filenames).take(split.num_samples).map(
      lambda r: records.parse_example(r, keys=("image/filename", "image/class/label")))
  for example in ds.as_numpy_iterator():
    names.append(example["image/filename"].decode("utf-8", "replace"))
    labels.append(int(example["image/class/label"]))
  return names, np.array(labels, np.int64)


class PerExample:
  """The counting pass that also keeps each example's softmax, and the file it writes.

  `filenames`, `labels`: the real examples in dataset order (None: the file names are the examples' indices and the
  order check is skipped).
  """

  def __init__(self, filenames=None, labels=None):
    self.filenames = filenames
    self.labels = None if labels is None else np.asarray(labels, np.int64)
    self._steps = {}  # id(evaluator) -> its tf.function step
    self.last = None  # (labels, probabilities) of the last pass

  @classmethod
  def for_split(cls, split):
    return cls(*read_records(split))

  def _step_fn(self, evaluator):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from slimflowers.eval import tta  # pylint: disable=g-import-not-at-top
    strategy, model, num_classes = evaluator.strategy, evaluator.model, evaluator.num_classes

    def replica_step(batch):
      labels = batch["label"]
      mask = batch["mask"] if "mask" in batch else tf.ones_like(labels)
      logits = tta.logits_of(model(batch["image"], training=False))
      counts = metrics.batch_counts(logits, labels, mask, num_classes)
      probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
      predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)  # as batch_counts
      return counts, probabilities, predictions, tf.reshape(labels, [-1]), tf.reshape(mask, [-1])

    @tf.function
    def step(batch):
      counts, *per_example = strategy.run(replica_step, args=(batch,))
      counts = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in counts.items()}
      return (counts, *[tf.concat(strategy.experimental_local_results(v), 0) for v in per_example])

    return step

  def evaluate(self, evaluator):
    """One pass of `evaluator` (an exact.ExactEvaluator) keeping every real example's softmax; returns what
    evaluator.evaluate() returns (the counts are the same sums)."""
    import time  # pylint: disable=g-import-not-at-top
    step = self._steps.setdefault(id(evaluator), self._step_fn(evaluator))
    totals = metrics.Totals(evaluator.num_classes)
    probs, preds, labels = [], [], []
    start = time.perf_counter()
    for batch in evaluator._dist_dataset:  # pylint: disable=protected-access
      counts, p, pred, y, m = step(batch)
      totals.add(counts)
      keep = np.asarray(m).reshape(-1) > 0
      probs.append(np.asarray(p)[keep])
      preds.append(np.asarray(pred).reshape(-1)[keep])
      labels.append(np.asarray(y).reshape(-1)[keep])
    secs = time.perf_counter() - start
    probabilities = np.concatenate(probs) if probs else np.zeros([0, evaluator.num_classes], np.float32)
    predictions = np.concatenate(preds).astype(np.int64) if preds else np.zeros([0], np.int64)
    labels = np.concatenate(labels).astype(np.int64) if labels else np.zeros([0], np.int64)
    result = totals.result()
    if evaluator.expected_examples is not None and result["num_examples"] != evaluator.expected_examples:
      raise RuntimeError(f"Counted {result['num_examples']} examples but the split has "
                         f"{evaluator.expected_examples}: the eval dataset must yield every example once.")
    if len(labels) != result["num_examples"]:
      raise RuntimeError(f"The per-example pass kept {len(labels)} examples but counted {result['num_examples']}.")
    if self.labels is not None and not np.array_equal(labels, self.labels):
      raise RuntimeError("The per-example pass returned the examples in another order than the records (labels "
                         "differ): predictions.csv would pair file names with the wrong predictions.")
    confusion = np.zeros_like(result["confusion_matrix"])
    np.add.at(confusion, (labels, predictions), 1)
    if not np.array_equal(confusion, result["confusion_matrix"]):
      raise RuntimeError("The per-example predictions do not add up to the counted confusion matrix.")
    self.last = (labels, probabilities, predictions)
    result["eval_secs"] = secs
    result["images_per_sec"] = result["num_examples"] / max(secs, 1e-9)
    return result

  def write(self, eval_dir):
    """predictions.csv of the last pass into eval_dir; returns the record for results.jsonl."""
    labels, probabilities, predictions = self.last
    names = self.filenames if self.filenames is not None else [str(i) for i in range(len(labels))]
    return write(eval_dir, names, labels, probabilities, predictions)
