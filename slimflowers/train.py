"""The training program: an Orbit StandardTrainer + Controller under tf.distribute.

    python train_image_classifier.py --train_dir=/tmp/run --dataset_name=synthetic_flowers \
        --dataset_dir=data/synthetic_flowers --model_name=cifarnet --max_number_of_steps=100

Read top to bottom: strategy -> data -> model and optimizer -> restore -> update step -> loop.
Resume order (written down, logged loudly): a checkpoint in train_dir wins over
--checkpoint_path, which wins over random initialization.
"""
import math
import os
import shutil
import tempfile
import time
import types

from absl import logging
import keras
import numpy as np
import orbit
import tensorflow as tf

import datasets
import nets
from slimflowers import checkpoints
from slimflowers import devices
from slimflowers import fileio
from slimflowers import hparams
from slimflowers import input_pipeline
from slimflowers import optim
from slimflowers import preprocessing

AUX_LOSS_WEIGHT = 0.4  # TF-Slim's weight for Inception's auxiliary head.

# Orbit's Controller both logs and print()s each of its lines; keep the log line only, so
# the console (and a study's merged output) shows each line once.
orbit.controller._log = logging.info  # pylint: disable=protected-access
NUM_SUMMARY_IMAGES = 4


class NonFiniteLossError(FloatingPointError):
  pass


def resolve_config(cfg):
  """Fills unset (None) values with the net's and dataset's defaults; validates. Returns a new namespace."""
  cfg = types.SimpleNamespace(**vars(cfg))
  if not cfg.train_dir:
    raise ValueError("--train_dir is required: the directory for checkpoints and summaries "
                     "(e.g. --train_dir=runs/my_run).")
  if not cfg.dataset_dir:
    raise ValueError("--dataset_dir is required: the directory written by download_and_convert_data.py "
                     f"(e.g. python download_and_convert_data.py --dataset_name={cfg.dataset_name} "
                     f"--dataset_dir=data/{cfg.dataset_name}).")
  spec = nets.get_spec(cfg.model_name)
  cfg.preprocessing_name = cfg.preprocessing_name or spec.preprocessing
  cfg.train_image_size = cfg.train_image_size or spec.default_image_size
  if cfg.train_image_size < spec.min_image_size:
    raise ValueError(f"--train_image_size={cfg.train_image_size} is below {spec.name}'s minimum "
                     f"{spec.min_image_size}; use at least {spec.min_image_size}.")
  if cfg.batch_size < 1:
    raise ValueError(f"--batch_size={cfg.batch_size} must be >= 1.")
  if not cfg.max_number_of_steps and not cfg.num_epochs:
    raise ValueError("Set --max_number_of_steps or --num_epochs: how long to train.")
  cfg.save_summaries_steps = cfg.save_summaries_steps or cfg.log_every_n_steps
  cfg.steps_per_loop = cfg.steps_per_loop or min(cfg.log_every_n_steps, cfg.save_summaries_steps,
                                                 cfg.save_interval_steps or cfg.log_every_n_steps)
  return cfg


def _model_overrides(cfg):
  overrides = {"dropout_rate": cfg.dropout_rate, "aux_logits": cfg.aux_logits,
               "batch_norm_momentum": cfg.batch_norm_momentum, "batch_norm_epsilon": cfg.batch_norm_epsilon}
  return {k: v for k, v in overrides.items() if v is not None}


class ClassifierTrainer(orbit.StandardTrainer):
  """The inner loop: one update step per batch, accumulating the loop's metrics."""

  def __init__(self, *, strategy, model, optimizer, train_variables, cfg, num_classes, schedule,
               global_step, ema_model=None):
    self.strategy = strategy
    self.model = model
    self.optimizer = optimizer
    self.train_variables = train_variables
    self.cfg = cfg
    self.num_classes = num_classes
    self.schedule = schedule
    self.global_step = global_step
    self.ema_model = ema_model
    self.global_batch = cfg.batch_size
    self.num_replicas = strategy.num_replicas_in_sync
    self.wd_variables = nets.weight_decay_variables(model) if cfg.weight_decay > 0 else []
    self.loss_scale = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    # Loop accumulators: plain (non-distributed) variables, updated in cross-replica context.
    self._acc = {k: tf.Variable(0.0, trainable=False, dtype=tf.float64, name=f"acc_{k}")
                 for k in ("total_loss", "cross_entropy", "regularization_loss", "correct", "gradient_norm",
                           "steps")}
    self._compute = tf.function(self._forward_backward, jit_compile=bool(cfg.jit_compile))
    self._loop_start = None
    self._first_loop = True
    self.timing = {"steps": 0, "secs": 0.0}  # compile-free, checkpoint-free training time
    self.last_metrics = {}
    super().__init__(train_dataset=None,
                     options=orbit.StandardTrainerOptions(use_tf_while_loop=True))

  def _forward_backward(self, images, labels):
    cfg = self.cfg
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
      smoothing = cfg.label_smoothing if labels.dtype.is_integer else 0.0
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
        reg = cfg.weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in self.wd_variables])
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
    if self.cfg.clip_gradient_norm > 0:
      factor = tf.minimum(1.0, self.cfg.clip_gradient_norm / tf.maximum(norm, 1e-12))
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
    decay = tf.minimum(float(self.cfg.moving_average_decay), (1.0 + step) / (10.0 + step))
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
      raise NonFiniteLossError(
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


def _no_second_all_reduce(optimizer):
  """We all-reduce gradients in the step (so clipping sees global norms); Keras must not sum them again.

  Keras 3's TF optimizer sums gradients across replicas inside apply(); a test
  (1 replica vs 2 replicas, same global batch, same weights) guards this.
  """
  inner = getattr(optimizer, "inner_optimizer", optimizer)
  inner._all_reduce_sum_gradients = lambda grads_and_vars: list(grads_and_vars)  # pylint: disable=protected-access


def run(cfg):
  """Trains as `cfg` (a namespace with the train_flags values) says. Returns run_info."""
  # ---------------- Strategy ----------------
  strategy = devices.create_strategy(num_gpus=cfg.num_gpus, num_cpu_replicas=cfg.num_cpu_replicas)
  cfg = resolve_config(cfg)
  devices.set_precision(cfg.precision)
  keras.utils.set_random_seed(cfg.seed)
  num_replicas = strategy.num_replicas_in_sync
  if cfg.batch_size % num_replicas:
    raise ValueError(f"--batch_size={cfg.batch_size} is not divisible by the {num_replicas} replicas; "
                     f"use a multiple of {num_replicas}.")
  chief = devices.is_chief(strategy)
  # Non-chief workers must still save (collectives would deadlock) but somewhere harmless.
  ckpt_dir = cfg.train_dir if chief else tempfile.mkdtemp(prefix="slimflowers_worker_")
  os.makedirs(cfg.train_dir, exist_ok=True)

  # ---------------- Input pipeline ----------------
  split = datasets.get_split(cfg.dataset_name, cfg.dataset_split_name, cfg.dataset_dir)
  num_classes = split.num_classes
  steps_per_epoch = split.num_samples / cfg.batch_size
  max_steps = int(cfg.max_number_of_steps or math.ceil(cfg.num_epochs * steps_per_epoch))

  def make_dataset(start_step):
    def dataset_fn(ctx):
      per_replica = ctx.get_per_replica_batch_size(cfg.batch_size)
      ds = input_pipeline.train_dataset(
          split, batch_size=per_replica, image_size=cfg.train_image_size,
          preprocessing_name=cfg.preprocessing_name, seed=cfg.seed,
          start_index=start_step * cfg.batch_size, augment=cfg.augment,
          random_erasing=cfg.random_erasing, color_distortion=cfg.color_distortion, input_context=ctx)
      if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
        from official.vision.ops import augment  # pylint: disable=g-import-not-at-top
        mix = augment.MixupAndCutmix(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha,
                                     label_smoothing=cfg.label_smoothing, num_classes=num_classes)
        ds = ds.map(mix.distort, num_parallel_calls=tf.data.AUTOTUNE)
      return ds
    return strategy.distribute_datasets_from_function(dataset_fn)

  # ---------------- Model, optimizer, checkpoint ----------------
  overrides = _model_overrides(cfg)
  with strategy.scope():
    model = nets.get_model(cfg.model_name, num_classes, **overrides)
    ema_model = None
    if cfg.moving_average_decay:
      ema_model = nets.get_model(cfg.model_name, num_classes, **overrides)
    train_variables = checkpoints.select_trainable(model, cfg.trainable_scopes)
    schedule = optim.schedule_from_flags(cfg, steps_per_epoch=steps_per_epoch, max_steps=max_steps)
    optimizer = optim.create_optimizer(
        cfg.optimizer, schedule, momentum=cfg.momentum, rmsprop_decay=cfg.rmsprop_decay,
        rmsprop_momentum=cfg.rmsprop_momentum, opt_epsilon=cfg.opt_epsilon, adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2, adamw_weight_decay=cfg.adamw_weight_decay)
    if cfg.precision == "mixed_float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    # Keras 3 under MirroredStrategy: build before the first step (keras-team/keras#19246).
    optimizer.build(train_variables)
    _no_second_all_reduce(optimizer)
    global_step = orbit.utils.create_global_step()
  model_config = checkpoints.model_config(cfg.model_name, num_classes, overrides, cfg.train_image_size,
                                          cfg.preprocessing_name)
  ckpt = checkpoints.make_checkpoint(global_step=global_step, model=model, optimizer=optimizer,
                                     ema_model=ema_model, model_config=model_config)
  manager = tf.train.CheckpointManager(
      # A non-chief's checkpoints only keep the collectives in step and are deleted at the end: keep one.
      ckpt, ckpt_dir, max_to_keep=cfg.max_checkpoints_to_keep if chief else 1, checkpoint_name="ckpt",
      step_counter=global_step,
      # Orbit saves only when an interval is set; time-based saves come from an action below.
      checkpoint_interval=cfg.save_interval_steps or 10**12)

  trainer = ClassifierTrainer(strategy=strategy, model=model, optimizer=optimizer,
                              train_variables=train_variables, cfg=cfg, num_classes=num_classes,
                              schedule=schedule, global_step=global_step, ema_model=ema_model)
  summary_dir = os.path.join(cfg.train_dir, "train")
  writer = tf.summary.create_file_writer(summary_dir) if chief else tf.summary.create_noop_writer()
  time_saver = _TimeBasedSaver(manager, global_step, cfg.save_interval_secs)
  summaries = _SummaryAction(trainer, writer, cfg, max_steps)

  # ---------------- Restore: train_dir > --checkpoint_path > random init ----------------
  # Every worker resumes from the chief's newest checkpoint in train_dir (shared filesystem), though a
  # non-chief saves elsewhere: workers starting from different steps would mismatch their collectives.
  latest = tf.train.latest_checkpoint(cfg.train_dir)
  if latest and not chief:
    with strategy.scope():  # as Orbit restores on the chief: same variable creations, same collectives
      ckpt.restore(latest)
  controller = orbit.Controller(
      global_step=global_step, trainer=trainer, strategy=strategy, steps_per_loop=cfg.steps_per_loop,
      checkpoint_manager=manager, summary_dir=None, train_actions=[summaries, time_saver])
  if latest:
    logging.warning("RESUMING from %s (step %d): a checkpoint in train_dir wins; --checkpoint_path=%s is ignored.",
                    latest, int(global_step.numpy()), cfg.checkpoint_path)
    source = latest
  elif cfg.checkpoint_path:
    source = checkpoints.restore_for_fine_tuning(
        model, cfg.checkpoint_path, model_name=cfg.model_name, exclude_scopes=cfg.checkpoint_exclude_scopes,
        ignore_missing_vars=cfg.ignore_missing_vars)
    if ema_model is not None:
      ema_model.set_weights(model.get_weights())
    logging.warning("FINE-TUNING: initialized from --checkpoint_path=%s (excluded scopes: %s).",
                    cfg.checkpoint_path, cfg.checkpoint_exclude_scopes or "none")
  else:
    source = None
    if ema_model is not None:
      ema_model.set_weights(model.get_weights())
    logging.warning("RANDOM INIT: no checkpoint in %s and no --checkpoint_path.", cfg.train_dir)

  # ---------------- Run metadata ----------------
  start_step = int(global_step.numpy())
  info_path = os.path.join(cfg.train_dir, "run_info.json")
  previous = checkpoints.read_run_info(cfg.train_dir) if start_step > 0 else {}
  run_info = _run_info(cfg, split, model, train_variables, num_replicas, max_steps, source)
  # Time already spent by earlier (killed) processes of this run carries over.
  for k in ("timed_steps", "timed_secs", "train_wall_secs"):
    run_info[k] = previous.get(k, 0)
  if chief:
    _write_flags(cfg)
    fileio.write_json_atomic(info_path, run_info)
    _log_hparams(cfg, num_replicas, summary_dir)
    if start_step == 0:
      _write_image_summary(writer, split, cfg)

  # ---------------- Train loop ----------------
  trainer.train_dataset = make_dataset(start_step)
  logging.info("Training %s on %s/%s (%d examples, %d classes) for %d steps, global batch %d over %d replica(s).",
               cfg.model_name, cfg.dataset_name, cfg.dataset_split_name, split.num_samples, num_classes,
               max_steps, cfg.batch_size, num_replicas)
  wall_start = time.time()
  if start_step < max_steps:
    controller.train(steps=max_steps, checkpoint_at_completion=True)
  elif manager.latest_checkpoint is None or manager.latest_checkpoint != latest:
    manager.save(checkpoint_number=start_step, check_interval=False)
  writer.flush()

  # ---------------- Done ----------------
  timing = trainer.timing
  t_steps = run_info["timed_steps"] + timing["steps"]
  t_secs = run_info["timed_secs"] + timing["secs"]
  run_info.update({
      "final_step": int(global_step.numpy()), "finished": True,
      "train_wall_secs": run_info["train_wall_secs"] + (time.time() - wall_start),
      "timed_steps": t_steps, "timed_secs": t_secs,
      "sec_per_step": (t_secs / t_steps) if t_steps else None,
      "images_per_sec": (t_steps * cfg.batch_size / t_secs) if t_secs else None,
      "steps_per_hour": (3600.0 * t_steps / t_secs) if t_secs else None,
      "gflops": _gflops(cfg, model),
  })
  if chief:
    fileio.write_json_atomic(info_path, run_info)
  else:
    shutil.rmtree(ckpt_dir, ignore_errors=True)
  logging.info("Finished at step %d.%s", run_info["final_step"],
               f" Checkpoints in {cfg.train_dir}." if chief else "")
  return run_info


class _TimeBasedSaver:
  """Orbit action: saves a checkpoint when --save_interval_secs have passed since the last save."""

  def __init__(self, manager, global_step, interval_secs):
    self.manager, self.global_step, self.interval = manager, global_step, interval_secs
    self.last = time.time()

  def __call__(self, unused_output):
    if self.interval and time.time() - self.last >= self.interval:
      self.manager.save(checkpoint_number=self.global_step.numpy(), check_interval=False)
      self.last = time.time()


class _SummaryAction:
  """Orbit action: TensorBoard scalars every --save_summaries_steps, a console line every loop."""

  def __init__(self, trainer, writer, cfg, max_steps):
    self.trainer, self.writer, self.cfg, self.max_steps = trainer, writer, cfg, max_steps
    self.global_step = trainer.global_step
    self.last_summary_step = -1

  def __call__(self, unused_output):
    output = self.trainer.last_metrics
    step = int(self.global_step.numpy())
    if step // self.cfg.save_summaries_steps != self.last_summary_step // self.cfg.save_summaries_steps \
        or step == self.max_steps:
      with self.writer.as_default(step=step):
        for k, v in output.items():
          tf.summary.scalar(k, v)
      self.last_summary_step = step
    ips = output.get("images_per_sec")
    eta = (self.max_steps - step) * output["sec_per_step"] if "sec_per_step" in output else None
    logging.info("step %d/%d | loss %.4f | lr %.3g | %s | ETA %s", step, self.max_steps, output["total_loss"],
                 output["learning_rate"], f"{ips:.1f} img/s" if ips else "compiling",
                 time.strftime("%H:%M:%S", time.gmtime(eta)) if eta is not None else "?")


def _write_image_summary(writer, split, cfg):
  ds = input_pipeline.train_dataset(split, batch_size=NUM_SUMMARY_IMAGES, image_size=cfg.train_image_size,
                                    preprocessing_name=cfg.preprocessing_name, seed=cfg.seed,
                                    augment=cfg.augment, random_erasing=cfg.random_erasing,
                                    color_distortion=cfg.color_distortion)
  images, _ = next(iter(ds))
  with writer.as_default(step=0):
    tf.summary.image("input_images", preprocessing.denormalize(images, cfg.preprocessing_name),
                     max_outputs=NUM_SUMMARY_IMAGES)


def _write_flags(cfg):
  lines = []
  for k, v in sorted(vars(cfg).items()):
    if v is None:
      continue
    if isinstance(v, (list, tuple)):
      v = ",".join(map(str, v))
    if isinstance(v, bool):
      lines.append(f"--{k}" if v else f"--no{k}")
    else:
      lines.append(f"--{k}={v}")
  fileio.write_text_atomic(os.path.join(cfg.train_dir, "flags.txt"), "\n".join(lines) + "\n")


def _hparams(cfg, num_replicas):
  return {
      "model": nets.get_spec(cfg.model_name).name, "dataset": cfg.dataset_name,
      "image_size": cfg.train_image_size, "batch_size": cfg.batch_size, "optimizer": cfg.optimizer,
      "learning_rate": cfg.learning_rate, "lr_schedule": cfg.learning_rate_decay_type,
      "weight_decay": cfg.weight_decay, "augment": cfg.augment, "color_distortion": cfg.color_distortion,
      "mixup_alpha": cfg.mixup_alpha, "cutmix_alpha": cfg.cutmix_alpha, "label_smoothing": cfg.label_smoothing,
      "precision": cfg.precision,
      "replicas": num_replicas, "moving_average_decay": cfg.moving_average_decay or 0.0,
  }


def _log_hparams(cfg, num_replicas, summary_dir):
  hparams.log_hparams(os.path.dirname(summary_dir), _hparams(cfg, num_replicas),
                      metrics=["accuracy", "total_loss"])


def _run_info(cfg, split, model, train_variables, num_replicas, max_steps, source):
  return {
      "model_name": nets.get_spec(cfg.model_name).name, "dataset_name": cfg.dataset_name,
      "dataset_split_name": cfg.dataset_split_name, "num_examples": split.num_samples,
      "num_classes": split.num_classes, "image_size": cfg.train_image_size,
      "preprocessing_name": cfg.preprocessing_name, "batch_size": cfg.batch_size,
      "num_replicas": num_replicas, "precision": cfg.precision,
      "trainable_params": nets.trainable_parameter_count(model),
      "trained_params": int(sum(np.prod(v.shape) for v in train_variables)),
      "hparams": _hparams(cfg, num_replicas), "max_steps": max_steps, "initialized_from": source,
      "finished": False,
  }


def _gflops(cfg, model):
  try:
    return nets.gflops(model, cfg.train_image_size)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Could not count GFLOPs for %s: %s", cfg.model_name, e)
    return None
