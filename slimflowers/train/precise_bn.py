"""PreciseBN: batch-norm population statistics re-estimated with the weights they will be used with.

    estimator = precise_bn.Estimator(strategy, [model, ema_model], dataset_fn, num_batches=50)
    secs = estimator()   # every trainable BatchNormalization layer: moving_mean/variance replaced

Why. A BatchNormalization layer normalizes with the batch's own statistics in training and with
`moving_mean`/`moving_variance` at inference. Keras keeps those as an exponential moving average
(`momentum`, 0.99 in most nets): an average over roughly the last 1/(1 - momentum) batches, taken
with weights that have changed since. Early in training, or with a high learning rate, the
average lags the weights, and a checkpoint evaluates far below what it learned: mobilenet_v1_025,
400 steps on 1,797 real digits, 35.4 % validation with momentum 0.99, 70.2 % with 0.9, and 68.2 %
after re-estimating the 0.99 checkpoint's statistics over 50 batches (issue 20). Wu & Johnson 2021,
"Rethinking 'Batch' in BatchNorm" (arXiv 2105.07576, section 3), call the fix PreciseBN: run the
final weights over N training batches and take the equal-weight average of the per-batch mean and
variance (fvcore's `update_bn_stats`, used by detectron2's `PreciseBN` hook).

What is computed. For each batch b of a fixed set of N global batches and each layer l, the
mean and (biased, as Keras) variance of the layer's input over the whole global batch and every
spatial position, with the network in training mode (each earlier layer normalized by the batch's
statistics, as in training); then moving_mean = mean_b(mean_{b,l}), moving_variance =
mean_b(var_{b,l}), in float64 on the host.

- Exact under tf.distribute: a global batch split over R replicas gives the statistics one replica
  holding the whole batch would: each normalizing layer is switched to `synchronized` for the pass
  (Keras' cross-replica moments), and every layer's moments are two cross-replica sums (the sum
  and count first, then the squared deviations from the global mean). Tested: 2 replicas = 1. (A dropout
  before a batch-norm layer would draw other masks on another replica count; the registered nets have
  theirs in the head, after the last batch norm.)
- Deterministic: the batches are the first N of a stream seeded independently of training, the
  same on every call, and the pass restores the random-generator states it consumed (dropout), so
  re-estimating never changes what training does next.
- Frozen layers (trainable=False, e.g. outside --trainable_scopes) normalize with their moving
  statistics in training too: they are left as they are, and the layers after them see exactly
  what training saw.
- A net without BatchNormalization (cifarnet, alexnet_v2, vgg_16): nothing to do, no pass.
The trainer runs it just before every checkpoint it writes (slimflowers/train/trainer.py,
CheckpointSaver), so every checkpoint -- the evaluator's, best/, the export's, predict's -- holds
statistics of its own weights; see ARCHITECTURE.md for why there and not in the evaluator.
"""
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

# PreciseBN's batches come from a stream seeded with the run's --seed plus this: fixed, and not the
# first batches of training.
SEED_OFFSET = 7919


def batch_norm_layers(model, include_frozen=False):
  """The model's BatchNormalization layers (nested ones included) that update statistics in training."""
  every = model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
  layers = [layer for layer in every if isinstance(layer, keras.layers.BatchNormalization)]
  return layers if include_frozen else [layer for layer in layers if layer.trainable]


def _rng_states(model):
  """Variables that are not weights: the SeedGenerator states of dropout (see checkpoints.make_checkpoint)."""
  weight_ids = {id(v) for v in model.weights}
  return [v for v in model.variables if id(v) not in weight_ids]


class _Synchronized:
  """Within the block, the layers compute cross-replica batch moments (Keras' `synchronized` BatchNormalization)."""

  def __init__(self, layers):
    self.layers = layers

  def __enter__(self):
    self.saved = [layer.synchronized for layer in self.layers]
    for layer in self.layers:
      layer.synchronized = True

  def __exit__(self, *exc):
    for layer, value in zip(self.layers, self.saved):
      layer.synchronized = value


class _ModelStatistics:
  """One model's layers, the sub-model that returns their inputs, and the per-batch moments step."""

  def __init__(self, model, strategy):
    self.model = model
    self.strategy = strategy
    self.layers = batch_norm_layers(model)
    self.all_layers = batch_norm_layers(model, include_frozen=True)
    with strategy.scope():
      self.probe = keras.Model(model.inputs, [layer.input for layer in self.layers])
    self._step = tf.function(self._global_moments)

  def _replica_moments(self, images):
    ctx = tf.distribute.get_replica_context()
    outputs = self.probe(images, training=True)
    if not isinstance(outputs, (list, tuple)):
      outputs = [outputs]
    xs = [tf.cast(x, tf.float32) for x in outputs]
    axes = [list(range(len(x.shape) - 1)) for x in xs]
    counts = [tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32) for x in xs]
    sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [tf.reduce_sum(x, a) for x, a in zip(xs, axes)])
    counts = ctx.all_reduce(tf.distribute.ReduceOp.SUM, counts)
    means = [s / n for s, n in zip(sums, counts)]
    squares = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                             [tf.reduce_sum(tf.square(x - m), a) for x, m, a in zip(xs, means, axes)])
    return means, [s / n for s, n in zip(squares, counts)]

  def _global_moments(self, dist_images):
    means, variances = self.strategy.run(self._replica_moments, args=(dist_images,))
    # Every replica holds the same all-reduced values: take the first.
    first = lambda v: self.strategy.experimental_local_results(v)[0]
    return [first(m) for m in means], [first(v) for v in variances]

  def moments(self, dist_images):
    with _Synchronized(self.all_layers):
      means, variances = self._step(dist_images)
    return [np.asarray(m, np.float64) for m in means], [np.asarray(v, np.float64) for v in variances]


class Estimator:
  """Re-estimates the population statistics of `models` (e.g. the model and its EMA copy) in place.

  `dataset_fn(input_context)` gives per-replica batches (images, labels), like the trainer's
  input (strategy.distribute_datasets_from_function); only the first `num_batches` global
  batches are read, afresh on every call, so it must be a pure function of its seed.
  """

  def __init__(self, strategy, models, dataset_fn, num_batches):
    self.strategy = strategy
    self.num_batches = int(num_batches)
    self.models = [_ModelStatistics(m, strategy) for m in models if m is not None and batch_norm_layers(m)]
    self.dataset_fn = dataset_fn
    self.secs = 0.0     # total time spent, for run_info (not training time)
    self.calls = 0
    self._dataset = None

  @property
  def active(self):
    return bool(self.models) and self.num_batches > 0

  def __call__(self):
    """Re-estimates every model's statistics; returns the seconds it took (0.0 when there is nothing to do)."""
    if not self.active:
      return 0.0
    start = time.perf_counter()
    if self._dataset is None:
      self._dataset = self.strategy.distribute_datasets_from_function(self.dataset_fn)
    sums = [None] * len(self.models)
    saved_rng = [[v.numpy() for v in _rng_states(s.model)] for s in self.models]
    batches = iter(self._dataset)  # from the first batch again: the same batches on every call
    for count in range(self.num_batches):
      try:
        batch = next(batches)
      except StopIteration:
        raise ValueError(f"PreciseBN needs {self.num_batches} batches but the input gave {count}.") from None
      images = batch[0] if isinstance(batch, (tuple, list)) else batch
      for i, stats in enumerate(self.models):
        means, variances = stats.moments(images)
        if sums[i] is None:
          sums[i] = (means, variances)
        else:
          sums[i] = ([a + b for a, b in zip(sums[i][0], means)], [a + b for a, b in zip(sums[i][1], variances)])
    count = self.num_batches
    for stats, (mean_sums, var_sums), rng in zip(self.models, sums, saved_rng):
      for layer, m, v in zip(stats.layers, mean_sums, var_sums):
        layer.moving_mean.assign((m / count).astype(layer.moving_mean.dtype))
        layer.moving_variance.assign((v / count).astype(layer.moving_variance.dtype))
      for var, value in zip(_rng_states(stats.model), rng):
        var.assign(value)
    secs = time.perf_counter() - start
    self.secs += secs
    self.calls += 1
    logging.info("PreciseBN: batch-norm statistics of %d model(s) re-estimated over %d batches in %.1fs.",
                 len(self.models), count, secs)
    return secs
