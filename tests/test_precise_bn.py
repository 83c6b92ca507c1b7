"""PreciseBN: batch-norm statistics re-estimated with the weights (train/precise_bn.py, the trainer's saves)."""
import numpy as np
import pytest
import tensorflow as tf

import nets
from slimflowers.train import precise_bn
from tests import tiny_data

NET, SIZE, GLOBAL_BATCH, NUM_BATCHES = "mobilenet_v1_025", 32, 8, 3


def _images():
  rng = np.random.RandomState(0)
  x = rng.uniform(-1, 1, (GLOBAL_BATCH * (NUM_BATCHES + 2), SIZE, SIZE, 3)).astype(np.float32)
  x[: len(x) // 2] += 0.5  # batches that differ, so a per-replica or a per-batch mistake shows
  return x


def _dataset_fn(images, calls=None):
  def fn(ctx):
    if calls is not None:
      calls.append(ctx)
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros(len(images), np.int32)))
    return ds.batch(ctx.get_per_replica_batch_size(GLOBAL_BATCH), drop_remainder=True)
  return fn


def _tiny_bn_net(dropout=0.3):
  """Four batch-norm layers, a dropout between two of them (its generator state must come back)."""
  import keras  # pylint: disable=g-import-not-at-top
  inputs = keras.Input((SIZE, SIZE, 3))
  x = inputs
  for i, (filters, stride) in enumerate(((8, 1), (8, 2), (8, 2), (4, 1))):
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"conv{i}")(x)
    x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
    x = keras.layers.ReLU()(x)
    if i == 1 and dropout:
      x = keras.layers.Dropout(dropout, seed=1)(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


def _model(strategy, weights=None, name=None, dropout=0.3):
  with strategy.scope():
    tf.keras.utils.set_random_seed(1)
    model = nets.get_model(name, 4) if name else _tiny_bn_net(dropout)
    model(tf.zeros([1, SIZE, SIZE, 3]))
  if weights is not None:
    model.set_weights(weights)
  return model


def _statistics(model):
  return [(layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
          for layer in precise_bn.batch_norm_layers(model, include_frozen=True)]


def test_two_replicas_give_what_one_replica_with_the_same_global_batches_gives():
  images = _images()
  one = tf.distribute.get_strategy()
  two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  # No dropout here: another replica count draws other masks (the registered nets have theirs after the last
  # batch norm, in the head).
  model1 = _model(one, dropout=0)
  model2 = _model(two, model1.get_weights(), dropout=0)
  before = _statistics(model1)
  precise_bn.Estimator(one, [model1], _dataset_fn(images), NUM_BATCHES)()
  precise_bn.Estimator(two, [model2], _dataset_fn(images), NUM_BATCHES)()
  after1, after2 = _statistics(model1), _statistics(model2)
  assert len(after1) == 4
  for (m1, v1), (m2, v2), (m0, _) in zip(after1, after2, before):
    assert not np.allclose(m1, m0)  # re-estimated, not left at the initial zeros
    np.testing.assert_allclose(m1, m2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v1, v2, rtol=1e-4, atol=1e-5)
  # The first layer against numpy: the equal-weight average over the batches of each global batch's mean and
  # (biased) variance of the layer's input over images and positions.
  first = precise_bn.batch_norm_layers(model1)[0]
  inputs = tf.keras.Model(model1.inputs, first.input)(images[:GLOBAL_BATCH * NUM_BATCHES]).numpy()
  per_batch = inputs.reshape(NUM_BATCHES, -1, inputs.shape[-1]).astype(np.float64)
  np.testing.assert_allclose(after1[0][0], per_batch.mean(axis=1).mean(axis=0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(after1[0][1], per_batch.var(axis=1).mean(axis=0), rtol=1e-4, atol=1e-6)


def test_deterministic_and_leaves_the_dropout_generators_where_they_were():
  strategy = tf.distribute.get_strategy()
  model = _model(strategy)
  rng = [v.numpy().copy() for v in precise_bn._rng_states(model)]  # pylint: disable=protected-access
  assert rng  # the dropout's generator: the pass runs it in training mode
  estimator = precise_bn.Estimator(strategy, [model], _dataset_fn(_images()), NUM_BATCHES)
  estimator()
  first = _statistics(model)
  assert estimator() > 0 and estimator.calls == 2
  for (m1, v1), (m2, v2) in zip(first, _statistics(model)):
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(v1, v2)
  for a, b in zip(rng, [v.numpy() for v in precise_bn._rng_states(model)]):  # pylint: disable=protected-access
    np.testing.assert_array_equal(a, b)


def test_frozen_layers_keep_their_statistics_and_the_rest_see_what_training_saw():
  strategy = tf.distribute.get_strategy()
  model = _model(strategy)
  layers = precise_bn.batch_norm_layers(model)
  frozen = 1
  for layer in layers[:frozen]:
    layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.25, np.float32))
    layer.trainable = False
  assert len(precise_bn.batch_norm_layers(model)) == len(layers) - frozen
  before = _statistics(model)
  precise_bn.Estimator(strategy, [model], _dataset_fn(_images()), NUM_BATCHES)()
  after = _statistics(model)
  np.testing.assert_array_equal(before[0][0], after[0][0])
  np.testing.assert_array_equal(before[0][1], after[0][1])
  assert all(not (np.allclose(m0, m1) and np.allclose(v0, v1))
             for (m0, v0), (m1, v1) in zip(before[frozen:], after[frozen:]))
  # The first layer is frozen, so the second's input is what the first gives in inference mode (its moving
  # statistics), not in training mode (the batch's).
  inputs = tf.keras.Model(model.inputs, layers[1].input)(_images()[:GLOBAL_BATCH * NUM_BATCHES], training=False)
  per_batch = inputs.numpy().reshape(NUM_BATCHES, -1, inputs.shape[-1]).astype(np.float64)
  np.testing.assert_allclose(after[1][0], per_batch.mean(axis=1).mean(axis=0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(after[1][1], per_batch.var(axis=1).mean(axis=0), rtol=1e-4, atol=1e-6)


def test_a_net_without_batch_norm_is_left_alone():
  strategy = tf.distribute.get_strategy()
  calls = []
  estimator = precise_bn.Estimator(strategy, [_model(strategy, name="cifarnet"), None], _dataset_fn(_images(), calls),
                                   NUM_BATCHES)
  assert not estimator.active and estimator() == 0.0 and calls == []


def _saved_and_offline(train_dir, prefix, num_classes, use_ema=False):
  """The statistics `prefix` holds, and those re-estimated offline (as the trainer does) from its weights."""
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  import datasets  # pylint: disable=g-import-not-at-top
  cfg = train.resolve_config(train_flags.parse([f"--flagfile={train_dir / 'flags.txt'}"]))
  strategy = tf.distribute.get_strategy()
  model = nets.get_model(NET, num_classes)
  model(tf.zeros([1, SIZE, SIZE, 3]))
  tf.train.Checkpoint(**{"ema_model" if use_ema else "model": model}).read(prefix).expect_partial()
  saved = _statistics(model)
  split = datasets.get_split(cfg.dataset_name, cfg.dataset_split_name, cfg.dataset_dir)
  precise_bn.Estimator(strategy, [model], train.precise_bn_dataset_fn(cfg, split), cfg.precise_bn_batches)()
  return saved, _statistics(model)


def _assert_same(a, b):
  assert len(a) == len(b) == 27
  for (m1, v1), (m2, v2) in zip(a, b):
    np.testing.assert_allclose(m1, m2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v1, v2, rtol=1e-4, atol=1e-5)


class _Killed(Exception):
  pass


def _checkpoint_statistics(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if "moving_mean" in k or "moving_variance" in k}


@pytest.mark.slow  # three short trainings of a net with batch norm
def test_checkpoints_hold_statistics_of_their_own_weights_and_a_resume_ends_the_same(
    tiny_dataset, tmp_path, monkeypatch):
  """The trainer re-estimates before each save (the EMA model from its own weights); a run killed after its
  first checkpoint and started again ends with the statistics of an uninterrupted run."""
  from slimflowers.train import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  flags = dict(model_name=NET, train_image_size=SIZE, max_number_of_steps=4, save_interval_steps=2,
               log_every_n_steps=2, precise_bn_batches=2, moving_average_decay=0.9)
  straight = tmp_path / "straight"
  info = tiny_data.train(straight, tiny_dataset, **flags)
  assert info["precise_bn_secs"] > 0
  saved_model, offline = _saved_and_offline(straight, str(straight / "ckpt-4"), 3)
  _assert_same(saved_model, offline)
  saved_ema, offline = _saved_and_offline(straight, str(straight / "ckpt-4"), 3, use_ema=True)
  _assert_same(saved_ema, offline)
  assert not np.allclose(saved_model[-1][0], saved_ema[-1][0])  # the EMA model's own, not a copy
  # Interrupted: the process dies in the loop after ckpt-2 was written; started again, it resumes from step 2.
  original = trainer_lib.SummaryAction.__call__

  def die_at_step_4(self, output):
    original(self, output)
    if int(self.global_step.numpy()) == 4:
      raise _Killed()
  monkeypatch.setattr(trainer_lib.SummaryAction, "__call__", die_at_step_4)
  resumed = tmp_path / "resumed"
  with pytest.raises(_Killed):
    tiny_data.train(resumed, tiny_dataset, **flags)
  assert tf.train.latest_checkpoint(str(resumed)).endswith("ckpt-2")
  monkeypatch.setattr(trainer_lib.SummaryAction, "__call__", original)
  tiny_data.train(resumed, tiny_dataset, **flags)
  a, b = _checkpoint_statistics(str(straight / "ckpt-4")), _checkpoint_statistics(str(resumed / "ckpt-4"))
  assert a.keys() == b.keys() and len(a) == 4 * 27  # model and ema_model, mean and variance
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
