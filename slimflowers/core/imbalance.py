"""Class imbalance: the warning, `--class_weights=balanced` and `--balanced_sampling`.

    counts = imbalance.class_counts(split)                 # [n_0, ..., n_k-1] of the training split's records
    imbalance.warning(counts, class_names, "train")        # a sentence when max >= 5 x min, else None
    imbalance.balanced_weights(counts)                     # n / (k * n_c), scikit-learn's "balanced" (SOURCES.md §9)
    imbalance.training_weights(split, class_weights="balanced", balanced_sampling=False)   # the trainer's call

In core (not data) because the converter (datasets/conversion.py, below slimflowers) warns too.

Class weights (the trainer, slimflowers/train/trainer.py): each example's cross-entropy is weighted by its class's
weight, and the loss is the weighted MEAN over the global batch: sum_i w_i l_i / sum_i w_i, the denominator
summed across replicas before the step, so R replicas take exactly the step one replica takes with the same
global batch. (Keras' `fit(class_weight=...)` divides by the batch size instead, and does not work with
tf.data datasets: tensorflow#47032, keras#20542.)

Balanced sampling (the input pipeline, slimflowers/data/input_pipeline.py): one infinite stream of record numbers per class, each a new seeded
permutation of that class's records per pass, mixed with equal weights by
`tf.data.Dataset.sample_from_datasets` under a fixed seed; the mixed stream is then numbered. Element i is
thus a pure function of (seed, i) like the unbalanced stream, so a run resumed at step s skips s x batch
elements (record numbers only: nothing is read or decoded) and sees exactly the batches an uninterrupted
run sees. Small classes are repeated more often: with 10:1 counts, each minority image appears about
ten times as often as a majority image.
"""
from absl import logging
import numpy as np
import tensorflow as tf

from datasets import records

RATIO_WARNING = 5.0  # the largest class has at least this many times the images of the smallest
CLASS_WEIGHTS = ("none", "balanced")


def class_counts(split):
  """Records per class id of a converted split, counted from the shards' labels (no image is decoded)."""
  labels = labels_of(split)
  return np.bincount(labels, minlength=split.num_classes).tolist()


def labels_of(split):
  """int64 [num_samples]: each record's label, in record order."""
  ds = tf.data.TFRecordDataset(split.filenames).map(
      lambda r: records.parse_example(r, keys=("image/class/label",))["image/class/label"],
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return np.fromiter(ds.as_numpy_iterator(), np.int64)


def warning(counts, class_names, where):
  """One line when the largest class holds >= RATIO_WARNING times the images of the smallest (else None)."""
  counts = np.asarray(counts)
  if counts.size < 2 or counts.max() == 0:
    return None
  small, large = int(np.argmin(counts)), int(np.argmax(counts))
  if counts[small] and counts[large] < RATIO_WARNING * counts[small]:
    return None
  name = lambda c: class_names[c] if class_names and c < len(class_names) else str(c)
  ratio = f"{counts[large] / counts[small]:.1f}x" if counts[small] else "all (the smallest is empty)"
  return (f"The {where} split is imbalanced: its largest class {name(large)!r} has {int(counts[large])} images, "
          f"{ratio} the {int(counts[small])} of its smallest {name(small)!r}. Accuracy will favour the large "
          "classes; watch mean_per_class_accuracy, and consider --class_weights=balanced or --balanced_sampling.")


def balanced_weights(counts):
  """n / (k * n_c) per class (0 for an empty class: it has no examples to weigh)."""
  counts = np.asarray(counts, np.float64)
  n, k = counts.sum(), len(counts)
  return np.where(counts > 0, n / (k * np.maximum(counts, 1)), 0.0).astype(np.float32)


def training_weights(split, *, class_weights, balanced_sampling):
  """The trainer's: warns about an imbalanced training split (unless one of the two options is on); the weights
  `class_weights` ("none" or "balanced") asks for, as a list (None for "none")."""
  counts = class_counts(split)
  line = warning(counts, [split.labels_to_names.get(c, str(c)) for c in range(split.num_classes)], split.split_name)
  if line and not (class_weights != "none" or balanced_sampling):
    logging.warning("%s", line)
  if class_weights != "balanced":
    return None
  weights = balanced_weights(counts)
  logging.info("--class_weights=balanced: %s", ", ".join(f"{split.labels_to_names.get(c, c)} {w:.3g}"
                                                       for c, w in enumerate(weights)))
  return weights.tolist()


def check_class_weights(value):
  if value not in CLASS_WEIGHTS:
    raise ValueError(f"--class_weights={value}: use one of {', '.join(CLASS_WEIGHTS)}.")


def balanced_epochs(labels, seed, start_index):
  """(global index, record number) from `start_index` on, the classes drawn equally (see the module doc).

  labels: int [n] of the split's records in record order. Classes without records are left out.
  """
  labels = np.asarray(labels)
  seed_t = tf.constant(seed, tf.int64)
  streams = []
  for c in np.unique(labels):
    members = tf.constant(np.flatnonzero(labels == c), tf.int64)
    n_c = int(members.shape[0])

    def epoch(e, members=members, n_c=n_c, c=int(c)):
      # Seeds (seed, -2^40 - c * 2^20 - e) never meet the unbalanced stream's (seed, -1 - e) nor the
      # per-element augmentation seeds (seed, i >= 0).
      perm = tf.argsort(tf.random.stateless_uniform([n_c], seed=tf.stack([seed_t, -(1 << 40) - c * (1 << 20) - e])))
      return tf.data.Dataset.from_tensor_slices(tf.gather(members, perm))

    streams.append(tf.data.Dataset.range(0, tf.int64.max).flat_map(epoch))
  mixed = tf.data.Dataset.sample_from_datasets(streams, weights=[1.0 / len(streams)] * len(streams), seed=seed,
                                               stop_on_empty_dataset=False)
  return mixed.enumerate().skip(start_index)
