"""The inner loop: one update step per batch under tf.distribute (an Orbit StandardTrainer), and its actions.

    trainer = trainer.ClassifierTrainer(strategy=strategy, model=model, num_classes=5, schedule=schedule,
                                        optimizer_name="rmsprop", optimizer_options={...}, global_batch_size=32,
                                        global_step=orbit.utils.create_global_step())
    trainer.train_dataset = strategy.distribute_datasets_from_function(dataset_fn)
    trainer.train(tf.constant(100))

The loss is averaged over the GLOBAL batch and gradients are all-reduced once, in the
step, so R replicas with global batch B take exactly the step one replica with batch B
takes, and clipping sees the global norm (Keras' own second all-reduce is switched off).
The outer loop (checkpoints, summaries, resume) is train.py with Orbit's Controller.
"""
import math
import time

from absl import logging
import keras
import orbit
import tensorflow as tf

import nets
from slimflowers.core import errors
from slimflowers.train import optim

AUX_LOSS_WEIGHT = 0.4  # TF-Slim's weight for Inception's auxiliary head.


def _no_second_all_reduce(optimizer):
  """We all-reduce gradients in the step (so clipping sees global norms); Keras must not sum them again.

  Keras 3's TF optimizer sums gradients across replicas inside apply(); a test
  (1 replica vs 2 replicas, same global batch, same weights) guards this.
  """
  inner = getattr(optimizer, "inner_optimizer", optimizer)
  inner._all_reduce_sum_gradients = lambda grads_and_vars: list(grads_and_vars)  # pylint: disable=protected-access


class ClassifierTrainer(orbit.StandardTrainer):
  """One update step per batch, accumulating the loop's metrics (see the module doc)."""

  def __init__(self, *, strategy, model, num_classes, schedule, optimizer_name, optimizer_options,
               global_batch_size, global_step, train_variables=None, label_smoothing=0.0, weight_decay=0.0,
               clip_gradient_norm=0.0, ema_model=None, moving_average_decay=None, loss_scaling=False,
               jit_compile=False):
    self.strategy = strategy
    self.model = model
    self.num_classes = num_classes
    self.schedule = schedule
    self.global_step = global_step
    self.global_batch = global_batch_size
    self.train_variables = list(train_variables if train_variables is not None else model.trainable_variables)
    self.label_smoothing = label_smoothing
    self.clip_gradient_norm = clip_gradient_norm
    self.ema_model = ema_model
    self.moving_average_decay = moving_average_decay
    self.num_replicas = strategy.num_replicas_in_sync
    self.weight_decay = weight_decay
    self.wd_variables = nets.weight_decay_variables(model) if weight_decay > 0 else []
    with strategy.scope():
      with errors.as_user_errors():
        optimizer = optim.create_optimizer(optimizer_name, schedule, **optimizer_options)
      if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      # Keras 3 under MirroredStrategy: build before the first step (keras-team/keras#19246).
      optimizer.build(self.train_variables)
    _no_second_all_reduce(optimizer)
    self.optimizer = optimizer
    self.loss_scale = loss_scaling
    # Loop accumulators: plain (non-distributed) variables, updated in cross-replica context.
    self._acc = {k: tf.Variable(0.0, trainable=False, dtype=tf.float64, name=f"acc_{k}")
                 for k in ("total_loss", "cross_entropy", "regularization_loss", "correct", "gradient_norm",
                           "steps")}
    self._compute = tf.function(self._forward_backward, jit_compile=bool(jit_compile))
    self._loop_start = None
    self._first_loop = True
    self.timing = {"steps": 0, "secs": 0.0}  # compile-free, checkpoint-free training time
    self.last_metrics = {}
    super().__init__(train_dataset=None, options=orbit.StandardTrainerOptions(use_tf_while_loop=True))

  def _forward_backward(self, images, labels):
    with tf.GradientTape() as tape:
      outputs = self.model(images, training=True)
      aux_logits = None
      if isinstance(outputs, dict):
        logits, aux_logits = outputs["logits"], outputs.get("aux_logits")
      else:
        logits = outputs
      logits = tf.cast(logits, tf.float32)
      if labels.dtype.is_integer:
        onehot = tf.one_hot(labels, self.num_classes)
      else:  # mixup / cutmix already produced (smoothed) soft labels
        onehot = tf.cast(labels, tf.float32)
      smoothing = self.label_smoothing if labels.dtype.is_integer else 0.0
      per_example = keras.losses.categorical_crossentropy(onehot, logits, from_logits=True,
                                                          label_smoothing=smoothing)
      # Averaged over the GLOBAL batch: replicas' gradients are summed, so R replicas with
      # global batch B take exactly the step 1 replica with batch B would.
      ce = tf.reduce_sum(per_example) / self.global_batch
      loss = ce
      if aux_logits is not None:
        aux = keras.losses.categorical_crossentropy(onehot, tf.cast(aux_logits, tf.float32),
                                                    from_logits=True, label_smoothing=smoothing)
        loss += AUX_LOSS_WEIGHT * tf.reduce_sum(aux) / self.global_batch
      reg = tf.constant(0.0)
      if self.wd_variables:  # TF-Slim's l2_regularizer: wd * sum(w^2) / 2
        reg = self.weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in self.wd_variables])
      total = loss + reg / self.num_replicas
      scaled = self.optimizer.scale_loss(total) if self.loss_scale else total
    grads = tape.gradient(scaled, self.train_variables)
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(onehot, -1)), tf.float32))
    return grads, total, ce, reg / self.num_replicas, correct

  def _replica_step(self, inputs):
    images, labels = inputs
    grads, total, ce, reg, correct = self._compute(images, labels)
    ctx = tf.distribute.get_replica_context()
    # One all-reduce, done here so clipping sees the global gradient; the optimizer
    # is told not to reduce again (see _no_second_all_reduce).
    grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    norm = tf.linalg.global_norm(grads)
    if self.loss_scale:
      norm = norm / tf.cast(self.optimizer.dynamic_scale, norm.dtype)
    if self.clip_gradient_norm > 0:
      factor = tf.minimum(1.0, self.clip_gradient_norm / tf.maximum(norm, 1e-12))
      grads = [g * tf.cast(factor, g.dtype) for g in grads]
    self.optimizer.apply(grads, self.train_variables)
    return total, ce, reg, correct, norm

  def train_loop_begin(self):
    for v in self._acc.values():
      v.assign(0.0)
    self._loop_start = time.perf_counter()

  def train_step(self, iterator):
    total, ce, reg, correct, norm = self.strategy.run(self._replica_step, args=(next(iterator),))
    s = lambda x: tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None), tf.float64)
    self._acc["total_loss"].assign_add(s(total))
    self._acc["cross_entropy"].assign_add(s(ce))
    self._acc["regularization_loss"].assign_add(s(reg))
    self._acc["correct"].assign_add(s(correct))
    self._acc["gradient_norm"].assign_add(
        tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None), tf.float64))
    self._acc["steps"].assign_add(1.0)
    self.global_step.assign_add(1)
    if self.ema_model is not None:
      self._update_ema()

  def _update_ema(self):
    # TF-Slim's ExponentialMovingAverage(decay, num_updates=global_step).
    step = tf.cast(self.global_step, tf.float32)
    decay = tf.minimum(float(self.moving_average_decay), (1.0 + step) / (10.0 + step))
    for e, v in zip(self.ema_model.weights, self.model.weights):
      ev = tf.cast(v.value, e.dtype)
      e.assign(e.value * tf.cast(decay, e.dtype) + ev * tf.cast(1.0 - decay, e.dtype))

  def train_loop_end(self):
    acc = {k: float(v.numpy()) for k, v in self._acc.items()}  # .numpy() waits for the loop to finish
    elapsed = time.perf_counter() - self._loop_start
    steps = max(acc["steps"], 1.0)
    out = {
        "total_loss": acc["total_loss"] / steps,
        "cross_entropy": acc["cross_entropy"] / steps,
        "regularization_loss": acc["regularization_loss"] / steps,
        "accuracy": acc["correct"] / (steps * self.global_batch),
        "gradient_norm": acc["gradient_norm"] / steps,
        "learning_rate": float(self.schedule(self.global_step.numpy() - 1)),
    }
    if not math.isfinite(acc["total_loss"]):
      raise errors.TrainingStopped(
          f"Loss became {acc['total_loss']} between steps {int(self.global_step.numpy() - steps)} and "
          f"{int(self.global_step.numpy())}; training stopped and the last good checkpoint is kept. "
          "Lower --learning_rate, set --clip_gradient_norm, or check the data.")
    if self._first_loop:  # includes tracing/compilation: not an honest throughput figure
      self._first_loop = False
    else:
      self.timing["steps"] += steps
      self.timing["secs"] += elapsed
      out["sec_per_step"] = elapsed / steps
      out["images_per_sec"] = steps * self.global_batch / elapsed
      out["steps_per_hour"] = 3600.0 / out["sec_per_step"]
    self.last_metrics = out
    # Orbit prints what we return on every loop: keep its line short; summaries use last_metrics.
    return {"loss": round(out["total_loss"], 4)}


# ----------------------------------------------------------------------------------------------------------------------
# Orbit actions: run after every loop of steps


class CheckpointSaver(tf.train.CheckpointManager):
  """A tf.train.CheckpointManager whose interval saves fall on multiples of the interval, and that calls
  `before_save()` (PreciseBN, the recent batch accuracy) before every checkpoint it writes.

  Every save goes through here -- Orbit's interval and final saves, TimeBasedSaver's, the preemption
  save -- so every checkpoint holds statistics of its own weights. TensorFlow's own manager saves
  `interval` steps after the last save, and always at the first loop after a (re)start: with loops of
  10 steps and an interval of 25 that is steps 10, 40, 70. Here: 25, 50, 75 (train.py makes loops
  end there, see `steps_per_loop`).
  """

  def __init__(self, checkpoint, directory, *, step_counter, before_save=None, **kwargs):
    super().__init__(checkpoint, directory, step_counter=step_counter, **kwargs)
    self.step_counter = step_counter
    self.before_save = before_save

  def save(self, checkpoint_number=None, check_interval=True, options=None):
    step = int(self.step_counter.numpy())
    if check_interval and (not self.checkpoint_interval or step % self.checkpoint_interval):
      return None
    latest = self.latest_checkpoint
    if latest is not None and int(latest.rsplit("-", 1)[-1]) == step:
      return None  # this step is saved already
    if self.before_save is not None:
      self.before_save()
    return super().save(checkpoint_number=checkpoint_number, check_interval=False, options=options)


def steps_per_loop(steps, save_interval_steps):
  """Orbit's steps_per_loop: loops of `steps`, cut short so that one ends on every multiple of the save interval."""
  if not save_interval_steps:
    return steps
  return lambda step: max(1, min(steps, save_interval_steps - int(step) % save_interval_steps))


class TimeBasedSaver:
  """Saves a checkpoint when `interval_secs` have passed since the last save."""

  def __init__(self, manager, global_step, interval_secs):
    self.manager, self.global_step, self.interval = manager, global_step, interval_secs
    self.last = time.time()

  def __call__(self, unused_output):
    if self.interval and time.time() - self.last >= self.interval:
      self.manager.save(checkpoint_number=self.global_step.numpy(), check_interval=False)
      self.last = time.time()


class SummaryAction:
  """TensorBoard scalars every `summary_steps`, a console line with ETA every loop, the lock's heartbeat."""

  def __init__(self, trainer, writer, *, summary_steps, max_steps, heartbeat=None):
    self.trainer, self.writer, self.summary_steps, self.max_steps = trainer, writer, summary_steps, max_steps
    self.global_step = trainer.global_step
    self.heartbeat = heartbeat
    self.last_summary_step = -1

  def __call__(self, unused_output):
    output = self.trainer.last_metrics
    step = int(self.global_step.numpy())
    if step // self.summary_steps != self.last_summary_step // self.summary_steps or step == self.max_steps:
      with self.writer.as_default(step=step):
        for k, v in output.items():
          tf.summary.scalar(k, v)
      self.last_summary_step = step
    if self.heartbeat is not None:
      self.heartbeat()
    ips = output.get("images_per_sec")
    eta = (self.max_steps - step) * output["sec_per_step"] if "sec_per_step" in output else None
    logging.info("step %d/%d | loss %.4f | lr %.3g | %s | ETA %s", step, self.max_steps, output["total_loss"],
                 output["learning_rate"], f"{ips:.1f} img/s" if ips else "compiling",
                 time.strftime("%H:%M:%S", time.gmtime(eta)) if eta is not None else "?")
