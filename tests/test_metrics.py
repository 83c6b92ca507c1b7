"""Exact evaluation equals a numpy computation on the whole split, for any batch size and replica count.

The 2-replica cases run this file as a script in a subprocess: logical CPU
devices must be configured before TensorFlow initializes, which the pytest
process has already done.
"""
import numpy as np
import pytest
import tensorflow as tf

from slimflowers.eval import exact as exact_eval
from slimflowers.eval import metrics

SPLIT_SIZE = 23  # prime: no batch size > 1 divides it


def padded_batches(images, labels, batch_size):
  """What input_pipeline.eval_dataset yields: {"image","label","mask"}, padded with mask=0 to a multiple of batch_size."""
  n = len(labels)
  padded = -(-n // batch_size) * batch_size
  pad = padded - n
  images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
  labels = np.concatenate([labels, np.zeros([pad], labels.dtype)])
  mask = np.concatenate([np.ones([n], np.float32), np.zeros([pad], np.float32)])
  return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels, "mask": mask}).batch(batch_size)


def tiny_split(num_classes, n=SPLIT_SIZE, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.normal(size=(n, 8, 8, 3)).astype(np.float32)
  labels = rng.integers(0, num_classes, size=n).astype(np.int32)
  labels[0] = num_classes - 1  # at least one class absent for small splits, the last present
  return images, labels


def tiny_model(num_classes, seed=0):
  """Conv + BatchNorm: the combination that breaks on an empty replica batch (tensorflow#61231)."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x))


def run_cases(strategy, cases):
  """[(num_classes, batch_size)] -> [(evaluator result, numpy reference)] as JSON-able dicts."""
  out = []
  for num_classes, batch_size in cases:
    images, labels = tiny_split(num_classes)
    with strategy.scope():
      model = tiny_model(num_classes)
    reference = metrics.numpy_metrics(model.predict(images, batch_size=SPLIT_SIZE, verbose=0), labels)
    got = exact_eval.ExactEvaluator(model, padded_batches(images, labels, batch_size), strategy,
                                    num_classes=num_classes, global_batch_size=batch_size,
                                    expected_examples=SPLIT_SIZE).evaluate()
    out.append((_jsonable(got), _jsonable(reference)))
  return out


def _jsonable(result):
  return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}


def assert_same(got, reference):
  assert got["num_examples"] == reference["num_examples"] == SPLIT_SIZE
  np.testing.assert_array_equal(got["confusion_matrix"], reference["confusion_matrix"])
  for key in ("accuracy", "top_5_accuracy", "mean_per_class_accuracy"):
    assert got[key] == pytest.approx(reference[key], abs=1e-12), key
  assert got["loss"] == pytest.approx(reference["loss"], rel=1e-5)
  for g, r in zip(got["per_class_accuracy"], reference["per_class_accuracy"], strict=True):
    assert (g is None and r is None) or g == pytest.approx(r, abs=1e-12)


# --- numpy-level units --------------------------------------------------------

def test_batch_counts_ignore_padding_and_match_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(10, 7)).astype(np.float32)
  labels = rng.integers(0, 7, size=10).astype(np.int32)
  mask = np.array([1] * 6 + [0] * 4, np.float32)
  logits[7] = np.nan  # a padding example may hold garbage: it must add nothing
  counts = metrics.batch_counts(logits, labels, mask, num_classes=7)
  totals = metrics.Totals(7)
  totals.add(counts)
  got, reference = totals.result(), metrics.numpy_metrics(logits[:6], labels[:6])
  np.testing.assert_array_equal(got["confusion_matrix"], reference["confusion_matrix"])
  assert got["top_5_accuracy"] == reference["top_5_accuracy"]
  assert got["loss"] == pytest.approx(reference["loss"], rel=1e-5)


def test_top_k_is_clipped_to_num_classes_and_counts_ranks():
  assert metrics.effective_top_k(3) == 3 and metrics.effective_top_k(102) == 5
  logits = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], np.float32)
  result = metrics.numpy_metrics(logits, [0, 0])
  assert result["top_5_accuracy"] == 1.0 and result["accuracy"] == 0.5
  # Seven classes, true class ranked 6th: a top-5 miss.
  logits = np.arange(7, dtype=np.float32)[None]
  counts = metrics.batch_counts(logits, [1], [1.0], num_classes=7)
  assert float(counts["top_k_correct"]) == 0.0
  counts = metrics.batch_counts(logits, [2], [1.0], num_classes=7)
  assert float(counts["top_k_correct"]) == 1.0


def test_mean_per_class_accuracy_is_over_present_classes():
  confusion = np.array([[3, 1, 0], [0, 0, 0], [1, 0, 1]])  # class 1 absent
  result = metrics.summarize(confusion, top_k_correct=6, loss_sum=3.0)
  assert result["per_class_accuracy"] == [0.75, None, 0.5]
  assert result["mean_per_class_accuracy"] == pytest.approx(0.625)
  assert result["accuracy"] == pytest.approx(4 / 6) and result["loss"] == 0.5
  with pytest.raises(ValueError, match="No examples"):
    metrics.summarize(np.zeros([3, 3]), 0, 0.0)


def test_confusion_colours_are_row_shares():
  np.testing.assert_allclose(metrics.row_shares(np.array([[9, 1], [0, 0]])), [[0.9, 0.1], [0.0, 0.0]])


# --- exact evaluation through tf.distribute -----------------------------------

@pytest.mark.parametrize("batch_size", [1, 4, 23, 100])
def test_one_replica_matches_numpy(batch_size):
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"], cross_device_ops=tf.distribute.ReductionToOneDevice())
  (got, reference), = run_cases(strategy, [(7, batch_size)])
  assert_same(got, reference)


def test_two_replicas_match_numpy():
  """Batch sizes that do not divide the split (4, 6) and do (46); 3 classes clips top-5 to top-3.

  Two logical CPU replicas in this process (tests/conftest.py splits the CPU at start-up).
  """
  from slimflowers.core import devices  # pylint: disable=g-import-not-at-top
  strategy = devices.create_strategy(num_gpus=0, num_cpu_replicas=2)
  assert strategy.num_replicas_in_sync == 2
  cases = run_cases(strategy, [(7, 4), (7, 6), (7, 46), (3, 4)])
  assert len(cases) == 4
  for got, reference in cases:
    assert_same(got, reference)
  with pytest.raises(ValueError) as e:
    exact_eval.ExactEvaluator(tiny_model(3), padded_batches(*tiny_split(3), 5), strategy, num_classes=3,
                              global_batch_size=5)
  assert "--batch_size=5 is not divisible by the 2 replicas" in str(e.value) and "--batch_size=6" in str(e.value)


@pytest.mark.parametrize("num_classes", [3, 25])
def test_confusion_image_is_an_rgb_figure_with_room_for_names_and_a_legend(num_classes):
  confusion = np.eye(num_classes, dtype=np.int64) * 4
  confusion[0, 1] = 2
  confusion[-1] = 0  # a class absent from the split: an empty row, no division by zero
  image = metrics.confusion_image(confusion, [f"class name {i}" for i in range(num_classes)], title="validation, "
                                  "step 7").numpy()
  assert image.dtype == np.uint8 and image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] == 3
  height, width = image.shape[1:3]
  assert 300 < width < 1400 and 300 < height < 1600
  assert (image.std(axis=(0, 1, 2)) > 10).all()  # a figure, not a blank
  if num_classes > metrics.CONFUSION_NAMED_CLASSES:  # the legend of numbers and names goes below the matrix
    assert height > width
