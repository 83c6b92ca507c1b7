"""Class imbalance (slimflowers/core/imbalance.py): the warning, --class_weights=balanced, --balanced_sampling.

The weighted loss is checked against the formula computed here from the model's logits, and one replica
against two (conftest.py's logical CPUs) on the same global batch; the balanced stream against itself
resumed midway.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

import datasets
from slimflowers.core import imbalance
from slimflowers.data import input_pipeline
from slimflowers.train import flags as train_flags
from slimflowers.train import program as train
from slimflowers.train import run_record
from tests import tiny_data


def test_warning_at_five_to_one_and_balanced_weights():
  assert imbalance.warning([49, 11, 10], ["a", "b", "c"], "train") is None
  line = imbalance.warning([50, 12, 10], ["a", "b", "c"], "train")
  assert "largest class 'a' has 50 images, 5.0x the 10 of its smallest 'c'" in line and "\n" not in line
  assert "--class_weights=balanced" in line and "--balanced_sampling" in line
  np.testing.assert_allclose(imbalance.balanced_weights([60, 30, 10]), [100 / 180, 100 / 90, 100 / 30], rtol=1e-6)
  # The weights make each class weigh the same in total (scikit-learn's "balanced").
  np.testing.assert_allclose(imbalance.balanced_weights([60, 30, 10]) * [60, 30, 10], [100 / 3] * 3, rtol=1e-6)


def test_balanced_stream_draws_classes_equally_and_resumes_exactly():
  labels = np.array([0] * 40 + [1] * 4 + [2] * 8)
  stream = list(imbalance.balanced_epochs(labels, seed=3, start_index=0).take(600).as_numpy_iterator())
  assert [i for i, _ in stream] == list(range(600))
  shares = np.bincount(labels[[r for _, r in stream]], minlength=3) / 600
  np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.06)
  # Each class's records come as permutations: the 4 records of class 1 all appear in its first 4 draws.
  firsts = [r for _, r in stream if labels[r] == 1][:4]
  assert sorted(firsts) == [40, 41, 42, 43]
  resumed = list(imbalance.balanced_epochs(labels, seed=3, start_index=437).take(100).as_numpy_iterator())
  assert resumed == stream[437:537]
  other_seed = list(imbalance.balanced_epochs(labels, seed=4, start_index=0).take(600).as_numpy_iterator())
  assert other_seed != stream


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
  """3 classes of 20, 2 and 2 photos, converted (no validation split)."""
  tmp = tmp_path_factory.mktemp("imbalanced")
  photos = str(tmp / "photos")
  tiny_data.write_folder(photos, num_classes=1, per_class=20, size=32)
  for c in (1, 2):
    tiny_data.write_folder(os.path.join(tmp, f"src{c}"), num_classes=c + 1, per_class=2, size=32, seed=c)
    os.rename(os.path.join(tmp, f"src{c}", f"class_{c}"), os.path.join(photos, f"class_{c}"))
  data = str(tmp / "converted")
  datasets.convert("folder", data, source=photos, validation_size=0, num_workers=1)
  return data


def test_converter_records_class_counts_and_trainer_warns(imbalanced, tmp_path, caplog):
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(imbalanced, "dataset.json")) as f:
    assert json.load(f)["splits"]["train"]["class_counts"] == [20, 2, 2]
  split = datasets.get_split("folder", "train", imbalanced)
  assert imbalance.class_counts(split) == [20, 2, 2]
  with caplog.at_level("WARNING"):
    assert imbalance.training_weights(split, class_weights="none", balanced_sampling=False) is None
  assert "10.0x the 2 of its smallest 'class_1'" in caplog.text
  weights = imbalance.training_weights(split, class_weights="balanced", balanced_sampling=False)
  np.testing.assert_allclose(weights, [24 / 60, 4, 4], rtol=1e-6)


def test_balanced_training_pipeline_resumes_exactly(imbalanced):
  split = datasets.get_split("folder", "train", imbalanced)
  kwargs = dict(batch_size=6, image_size=32, preprocessing_name="cifarnet", seed=1, balanced=True)
  for cache in (0, 1 << 30):  # the records in memory, and the decoded cache
    full = list(input_pipeline.train_dataset(split, decoded_cache_bytes=cache, **kwargs).take(8).as_numpy_iterator())
    labels = np.concatenate([b[1] for b in full])
    assert np.bincount(labels, minlength=3).min() >= 8  # 48 draws: no class starved (unbalanced: about 4 each)
    resumed = list(input_pipeline.train_dataset(split, start_index=30, decoded_cache_bytes=cache, **kwargs)
                   .take(3).as_numpy_iterator())
    for (images, labels_), (images_r, labels_r) in zip(full[5:], resumed):
      np.testing.assert_array_equal(labels_, labels_r)
      np.testing.assert_array_equal(images, images_r)


def _step(strategy, class_weights, images, labels):
  """One training step from fixed weights; returns (cross-entropy reported, weights after, logits before)."""
  tf.keras.utils.set_random_seed(0)
  cfg = train.resolve_config(train_flags.config(
      train_dir="unused", dataset_dir="unused", model_name="cifarnet", train_image_size=32, batch_size=8,
      max_number_of_steps=1, optimizer="sgd", learning_rate=0.5, weight_decay=0.0, dropout_rate=0.0,
      preprocessing_name="cifarnet"))
  trainer, _ = train.build_trainer(cfg, strategy, num_classes=3, steps_per_epoch=1, max_steps=1,
                                   class_weights=class_weights)
  logits = trainer.model(images, training=False).numpy()
  ds = tf.data.Dataset.from_tensors((images, labels))
  dist = strategy.experimental_distribute_dataset(ds)
  out = strategy.run(trainer._replica_step, (next(iter(dist)),))  # pylint: disable=protected-access
  ce = strategy.reduce(tf.distribute.ReduceOp.SUM, out, axis=None).numpy()[1]  # trainer._ACCUMULATED's order
  return ce, [v.numpy() for v in trainer.model.trainable_variables], logits


def test_class_weights_are_a_weighted_mean_over_the_global_batch_on_one_or_two_replicas():
  rng = np.random.default_rng(0)
  images = rng.normal(0, 1, (8, 32, 32, 3)).astype(np.float32)
  labels = np.array([0, 0, 0, 0, 0, 1, 2, 0], np.int32)  # replica 0 sees only class 0, replica 1 the rest
  weights = [0.4, 4.0, 4.0]
  one = tf.distribute.OneDeviceStrategy("/cpu:0")
  two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  ce1, after1, logits = _step(one, weights, images, labels)
  log_p = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1,
                                                                                                          keepdims=True)
  per_example = -log_p[np.arange(8), labels]
  w = np.array(weights)[labels]
  np.testing.assert_allclose(ce1, (w * per_example).sum() / w.sum(), rtol=1e-5)
  ce2, after2, _ = _step(two, weights, images, labels)
  np.testing.assert_allclose(ce2, ce1, rtol=1e-5)
  for a, b in zip(after1, after2):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  _, unweighted, _ = _step(one, None, images, labels)
  assert any(not np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(after1, unweighted))


def test_new_flags_do_not_refuse_resuming_a_run_recorded_without_them():
  now = train_flags.training_values(train_flags.config())
  assert now["class_weights"] == "none" and now["balanced_sampling"] == "False"
  recorded = {k: v for k, v in now.items() if k not in ("class_weights", "balanced_sampling")}
  assert not run_record.differing_flags(recorded, now)
  assert run_record.differing_flags(now, dict(now, class_weights="balanced")) == {
      "class_weights": ("none", "balanced")}
