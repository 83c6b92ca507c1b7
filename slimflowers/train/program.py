r"""The training program: an Orbit StandardTrainer + Controller under tf.distribute.

    python train_image_classifier.py --train_dir=/tmp/run --dataset_name=synthetic_flowers \
        --dataset_dir=data/synthetic_flowers --model_name=cifarnet --max_number_of_steps=100

Read top to bottom: `run` (strategy, train_dir's lock) -> `_run_locked`, whose named steps are TF-Slim's:
`_get_split` -> `_check_train_dir` (what the run remembers) -> `build_trainer` (model, optimizer) ->
`_configure_checkpoints` -> `_init_from_checkpoint` / `_init_fn` (restore) -> run metadata (metadata.py)
-> `_train_loop` -> done. The update step is trainer.py.

Resume order (written down, logged loudly): a checkpoint in train_dir wins over
--checkpoint_path, which wins over random initialization.
"""
import math
import os
import tempfile
import time
import types

from absl import logging
import orbit
import tensorflow as tf

import datasets
import nets
from slimflowers.core import checkpoints
from slimflowers.core import devices
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.core import locks
from slimflowers.core import run_dir
from slimflowers.data import input_pipeline
from slimflowers.data import preprocessing
from slimflowers.data import service as data_service
from slimflowers.train import flags as train_flags
from slimflowers.train import metadata
from slimflowers.train import optim
from slimflowers.train import precise_bn
from slimflowers.train import preemption
from slimflowers.train import run_record
from slimflowers.train import trainer as trainer_lib

PROGRAM = "train_image_classifier.py"
NUM_SUMMARY_IMAGES = 4
# What a killed trainer leaves in train_dir: TF's checkpoint staging directories, our temporary files.
LEFTOVERS = ("ckpt-*_temp", "*" + fileio.TMP_MARK + "*")


def resolve_config(cfg):
  """Fills unset (None) values with the net's and dataset's defaults; validates. Returns a new namespace."""
  cfg = types.SimpleNamespace(**vars(cfg))
  if not cfg.train_dir:
    raise errors.BadValue("--train_dir is required: the directory for checkpoints and summaries "
                          "(e.g. --train_dir=runs/my_run).")
  fileio.check_directory_flag("train_dir", cfg.train_dir)
  if not cfg.dataset_dir:
    with errors.as_user_errors():
      command = datasets.convert_command(cfg.dataset_name, f"data/{cfg.dataset_name}")
    raise errors.BadValue("--dataset_dir is required: the directory written by download_and_convert_data.py "
                          f"(e.g. {command}).")
  with errors.as_user_errors():
    spec = nets.get_spec(cfg.model_name)
  cfg.preprocessing_name = cfg.preprocessing_name or spec.preprocessing
  cfg.train_image_size = cfg.train_image_size or spec.default_image_size
  if cfg.train_image_size < spec.min_image_size:
    raise errors.BadValue(f"--train_image_size={cfg.train_image_size} is below {spec.name}'s minimum "
                          f"{spec.min_image_size}; use at least {spec.min_image_size}.")
  if cfg.batch_size < 1:
    raise errors.BadValue(f"--batch_size={cfg.batch_size} must be >= 1.")
  if cfg.max_number_of_steps is not None and cfg.max_number_of_steps < 1:
    raise errors.BadValue(f"--max_number_of_steps={cfg.max_number_of_steps} must be >= 1 (the global step to "
                          "train until).")
  if cfg.num_epochs is not None and not cfg.num_epochs > 0:
    raise errors.BadValue(f"--num_epochs={cfg.num_epochs} must be > 0.")
  if not cfg.max_number_of_steps and not cfg.num_epochs:
    raise errors.BadValue("Set --max_number_of_steps or --num_epochs: how long to train.")
  for name in ("log_every_n_steps", "save_summaries_steps", "save_interval_steps", "steps_per_loop"):
    value = getattr(cfg, name)
    if value is not None and value < 1:
      raise errors.BadValue(f"--{name}={value} must be >= 1 (or unset).")
  if cfg.tf_data_service and cfg.tf_data_service_timeout_secs < 1:
    raise errors.BadValue(f"--tf_data_service_timeout_secs={cfg.tf_data_service_timeout_secs} must be >= 1.")
  if cfg.decoded_cache_mb is not None and cfg.decoded_cache_mb < 0:
    raise errors.BadValue(f"--decoded_cache_mb={cfg.decoded_cache_mb} must be >= 0 (0: off).")
  if cfg.crop_area_range and len(cfg.crop_area_range) != 2:
    raise errors.BadValue(f"--crop_area_range={','.join(cfg.crop_area_range)}: give MIN,MAX (e.g. 0.25,1.0).")
  with errors.as_user_errors():
    preprocessing.check_names(cfg.preprocessing_name, cfg.color_distortion, preprocessing.crop_area_range(cfg))
  cfg.save_summaries_steps = cfg.save_summaries_steps or cfg.log_every_n_steps
  cfg.steps_per_loop = cfg.steps_per_loop or min(cfg.log_every_n_steps, cfg.save_summaries_steps,
                                                 cfg.save_interval_steps or cfg.log_every_n_steps)
  return cfg


def build_trainer(cfg, strategy, *, num_classes, steps_per_epoch, max_steps):
  """Model (and EMA copy), schedule, optimizer and update step as `cfg` (the resolved flags) says.

  Returns (trainer, model_config): trainer.model, .ema_model, .optimizer, .global_step
  are what a checkpoint holds.
  """
  overrides = train_flags.model_overrides(cfg)
  with strategy.scope():
    with errors.as_user_errors():
      model = nets.get_model(cfg.model_name, num_classes, **overrides)
      ema_model = nets.get_model(cfg.model_name, num_classes, **overrides) if cfg.moving_average_decay else None
    train_variables = checkpoints.select_trainable(model, cfg.trainable_scopes)
    global_step = orbit.utils.create_global_step()
  schedule = optim.schedule_from_flags(cfg, steps_per_epoch=steps_per_epoch, max_steps=max_steps)
  trainer = trainer_lib.ClassifierTrainer(
      strategy=strategy, model=model, num_classes=num_classes, schedule=schedule, optimizer_name=cfg.optimizer,
      optimizer_options=optim.optimizer_options(cfg), global_batch_size=cfg.batch_size, global_step=global_step,
      train_variables=train_variables, label_smoothing=cfg.label_smoothing, weight_decay=cfg.weight_decay,
      clip_gradient_norm=cfg.clip_gradient_norm, ema_model=ema_model,
      moving_average_decay=cfg.moving_average_decay, loss_scaling=cfg.precision == "mixed_float16",
      jit_compile=cfg.jit_compile)
  model_config = checkpoints.model_config(cfg.model_name, num_classes, overrides, cfg.train_image_size,
                                          cfg.preprocessing_name)
  return trainer, model_config


def make_dataset_fn(cfg, split, start_step, num_classes):
  """The training input for strategy.distribute_datasets_from_function, starting at global step `start_step`.

  With --tf_data_service the pipeline runs on the service's workers (slimflowers/data/service.py):
  every input pipeline consumes batches of one shared job, so there is no sharding and no skip.
  """
  service = cfg.tf_data_service

  def dataset_fn(ctx):
    per_replica = ctx.get_per_replica_batch_size(cfg.batch_size)
    ds = input_pipeline.train_dataset(
        split, batch_size=per_replica, image_size=cfg.train_image_size, preprocessing_name=cfg.preprocessing_name,
        seed=cfg.seed, start_index=0 if service else start_step * cfg.batch_size, augment=cfg.augment,
        random_erasing=cfg.random_erasing, color_distortion=cfg.color_distortion, random_flip=cfg.random_flip,
        crop_area_range=preprocessing.crop_area_range(cfg), input_context=None if service else ctx,
        streaming=True if service else None, decoded_cache_bytes=(cfg.decoded_cache_mb or 0) << 20)
    if service:
      ds = data_service.distribute(ds, service, data_service.job_name(cfg.train_dir, start_step))
      ds = ds.prefetch(tf.data.AUTOTUNE)
    if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
      from official.vision.ops import augment  # pylint: disable=g-import-not-at-top
      mix = augment.MixupAndCutmix(mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha,
                                   label_smoothing=cfg.label_smoothing, num_classes=num_classes)
      ds = ds.map(mix.distort, num_parallel_calls=tf.data.AUTOTUNE)
    return ds
  return dataset_fn


def precise_bn_dataset_fn(cfg, split):
  """PreciseBN's batches: the training split with the training preprocessing (not the evaluation's: measured
  better, BENCHMARKS.md), a stream of its own seed, so the same batches every time; no mixup or cutmix (images
  at test time are not mixed) and never the tf.data service (a few batches, read here)."""

  def dataset_fn(ctx):
    return input_pipeline.train_dataset(
        split, batch_size=ctx.get_per_replica_batch_size(cfg.batch_size), image_size=cfg.train_image_size,
        preprocessing_name=cfg.preprocessing_name, seed=cfg.seed + precise_bn.SEED_OFFSET, augment=cfg.augment,
        random_erasing=cfg.random_erasing, color_distortion=cfg.color_distortion, random_flip=cfg.random_flip,
        crop_area_range=preprocessing.crop_area_range(cfg), input_context=ctx)
  return dataset_fn


def _max_steps(cfg, num_samples):
  return int(cfg.max_number_of_steps or math.ceil(cfg.num_epochs * num_samples / cfg.batch_size))


def _decide(cfg, info, latest, max_steps):
  return run_record.decide(cfg.train_dir, info, train_flags.training_values(cfg), max_steps=max_steps,
                           latest_step=checkpoints.read_global_step(latest) if latest else None)


def preflight(cfg):
  """What this command (`cfg`, the unresolved flags) would do with its train_dir -- a run_record.Decision --
  without training or writing anything; raises errors.BadValue when the train_dir refuses it. (The study
  asks before it skips a finished run.)"""
  cfg = resolve_config(cfg)
  num_samples = 0 if cfg.max_number_of_steps else datasets.get_split(
      cfg.dataset_name, cfg.dataset_split_name, cfg.dataset_dir).num_samples
  return _decide(cfg, run_dir.read_run_info(cfg.train_dir), tf.train.latest_checkpoint(cfg.train_dir),
                 _max_steps(cfg, num_samples))


def check_resume_fits(latest, cfg, num_classes):
  """A train_dir holding another net or class count is an error naming both, not a Keras shape error."""
  held = checkpoints.read_model_config(latest) or {}
  want = (nets.get_spec(cfg.model_name).name, int(num_classes))
  have = (held.get("model_name"), held.get("num_classes"))
  if held and have != want:
    raise errors.BadValue(
        f"--train_dir={cfg.train_dir} holds another run: {have[0]} with {have[1]} classes (its latest checkpoint "
        f"{os.path.basename(latest)}), but this command trains {want[0]} with {want[1]} classes. Use another "
        "--train_dir, or the run's own flags (--flagfile=" + os.path.join(cfg.train_dir, run_dir.FLAGS_TXT) + ").")


def run(cfg):
  """Trains as `cfg` (a namespace with the train_flags values) says. Returns run_info."""
  # Orbit's Controller both logs and print()s each of its lines; keep the log line only (the console
  # shows our own progress line; Orbit's goes to the verbose log).
  orbit.controller._log = logging.info  # pylint: disable=protected-access
  # ---------------- Strategy ----------------
  strategy = devices.create_strategy(num_gpus=cfg.num_gpus, num_cpu_replicas=cfg.num_cpu_replicas)
  cfg = resolve_config(cfg)
  import keras  # pylint: disable=g-import-not-at-top
  policy = keras.mixed_precision.global_policy()
  devices.set_precision(cfg.precision)
  keras.utils.set_random_seed(cfg.seed)
  num_replicas = strategy.num_replicas_in_sync
  if cfg.batch_size % num_replicas:
    raise errors.BadValue(f"--batch_size={cfg.batch_size} is not divisible by the {num_replicas} replicas; "
                          f"use a multiple of {num_replicas}.")
  chief = devices.is_chief(strategy)
  if cfg.tf_data_service:  # nothing listening there: an error within the timeout, before anything is created
    data_service.wait_until_reachable(cfg.tf_data_service, cfg.tf_data_service_timeout_secs)
  # ---------------- train_dir: one trainer at a time (the chief's lock), leftovers of killed runs ----------------
  lock = locks.DirLock(cfg.train_dir, PROGRAM) if chief else None
  if lock is not None:
    lock.acquire()
  try:
    if chief:
      fileio.remove_leftovers(cfg.train_dir, LEFTOVERS, what="a killed trainer")
    with datasets.shard_errors_named(cfg.dataset_dir):  # a corrupted shard: named, with the fix
      return _run_locked(cfg, strategy, chief, lock)
  finally:
    if lock is not None:
      lock.release()
    keras.mixed_precision.set_global_policy(policy)  # a library call leaves no global state behind


def _run_locked(cfg, strategy, chief, lock):
  """The run, step by step (TF-Slim's train_image_classifier.py reads the same way: data, the train_dir's
  record, model and optimizer, checkpointing, restore, metadata, loop)."""
  num_replicas = strategy.num_replicas_in_sync
  # Non-chief workers must still save (collectives would deadlock) but somewhere harmless.
  ckpt_dir = cfg.train_dir if chief else tempfile.mkdtemp(prefix="slimflowers_worker_")
  fileio.makedirs(cfg.train_dir)
  split, max_steps = _get_split(cfg)
  latest, previous, decision = _check_train_dir(cfg, chief, split.num_classes, max_steps)
  if decision.action == run_record.FINISHED:  # trains no step: writes nothing
    logging.warning("%s already finished at step %d with these flags: nothing to do, nothing written. To train it "
                    "further, raise --max_number_of_steps above %d.", cfg.train_dir, decision.start_step,
                    decision.start_step)
    return previous

  trainer, model_config = build_trainer(cfg, strategy, num_classes=split.num_classes,
                                        steps_per_epoch=split.num_samples / cfg.batch_size, max_steps=max_steps)
  manager, estimator = _configure_checkpoints(cfg, strategy, trainer, model_config, split, ckpt_dir, chief)
  writer = tf.summary.create_file_writer(os.path.join(cfg.train_dir, run_dir.TRAIN_SUBDIR)) if chief else \
      tf.summary.create_noop_writer()
  actions = [trainer_lib.SummaryAction(trainer, writer, summary_steps=cfg.save_summaries_steps, max_steps=max_steps,
                                       heartbeat=lock.heartbeat if lock else None),
             trainer_lib.TimeBasedSaver(manager, trainer.global_step, cfg.save_interval_secs)]
  controller = _init_from_checkpoint(cfg, strategy, trainer, manager, actions, latest, chief)
  source = previous.get("initialized_from", latest) if latest else _init_fn(cfg, trainer)

  start_step = int(trainer.global_step.numpy())
  run_info = metadata.initial(cfg, split, trainer.model, trainer.train_variables, num_replicas, max_steps, source)
  metadata.start(cfg, run_info, decision, previous, num_replicas=num_replicas, start_step=start_step,
                 max_steps=max_steps, chief=chief)
  if chief and start_step == 0:
    _write_image_summary(writer, split, cfg)

  _train_loop(cfg, strategy, controller, manager, trainer, split, start_step=start_step, max_steps=max_steps,
              latest=latest, run_info=run_info, estimator=estimator, writer=writer, lock=lock, chief=chief,
              ckpt_dir=ckpt_dir)

  # ---------------- Done: `finished` with the final checkpoint, then the rest ----------------
  run_info["precise_bn_secs"] = run_info.get("precise_bn_secs", 0.0) + estimator.secs
  metadata.finish(cfg, run_info, trainer.model, final_step=trainer.global_step.numpy(), chief=chief)
  logging.info("Finished at step %d.%s", run_info["final_step"],
               f" Checkpoints in {cfg.train_dir}." if chief else "")
  return run_info


def _get_split(cfg):
  """The training split and the run's final step; warnings about the images' sizes."""
  split = datasets.get_split(cfg.dataset_name, cfg.dataset_split_name, cfg.dataset_dir)
  warn_about_image_sizes(cfg, datasets.image_sizes(cfg.dataset_dir, cfg.dataset_split_name),
                         datasets.conversion_options(cfg.dataset_dir).get("resize_to"))
  return split, _max_steps(cfg, split.num_samples)


def _check_train_dir(cfg, chief, num_classes, max_steps):
  """What train_dir remembers: (newest readable checkpoint, run_info, run_record.Decision); refuses a change."""
  # The newest checkpoint that reads completely: a corrupted newer one is named and moved aside (chief).
  latest = checkpoints.newest_readable(cfg.train_dir, move_aside=chief)
  if latest:
    check_resume_fits(latest, cfg, num_classes)
  previous = run_dir.read_run_info(cfg.train_dir)
  decision = _decide(cfg, previous, latest, max_steps)
  for line in decision.warnings:
    logging.warning("%s", line)
  return latest, previous, decision


def _configure_checkpoints(cfg, strategy, trainer, model_config, split, ckpt_dir, chief):
  """The checkpoint (with the loop's batch accuracy) and its saver, PreciseBN before every save.
  Returns (manager, PreciseBN estimator)."""
  ckpt = checkpoints.make_checkpoint(global_step=trainer.global_step, model=trainer.model,
                                     optimizer=trainer.optimizer, ema_model=trainer.ema_model,
                                     model_config=model_config)
  # The batch accuracy of the loop before each checkpoint: the evaluator compares validation with it
  # (slimflowers/eval/sanity.py), read from the checkpoint itself, so it never races the trainer.
  with strategy.scope():
    ckpt.train_accuracy = tf.Variable(-1.0, trainable=False, dtype=tf.float32, name="train_accuracy")
  # PreciseBN before every checkpoint (slimflowers/train/precise_bn.py): its statistics match its weights.
  estimator = precise_bn.Estimator(strategy, [trainer.model, trainer.ema_model], precise_bn_dataset_fn(cfg, split),
                                   cfg.precise_bn_batches)

  def before_save():
    accuracy = trainer.last_metrics.get("accuracy")
    if accuracy is not None and not (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0):  # soft labels: not comparable
      ckpt.train_accuracy.assign(accuracy)
    estimator()

  manager = trainer_lib.CheckpointSaver(
      # A non-chief's checkpoints only keep the collectives in step and are deleted at the end: keep one.
      ckpt, ckpt_dir, max_to_keep=cfg.max_checkpoints_to_keep if chief else 1, checkpoint_name="ckpt",
      step_counter=trainer.global_step, before_save=before_save,
      # Orbit saves only when an interval is set; time-based saves come from an action.
      checkpoint_interval=cfg.save_interval_steps or 10**12)
  return manager, estimator


def _init_from_checkpoint(cfg, strategy, trainer, manager, actions, latest, chief):
  """The Orbit Controller; it restores the newest checkpoint in train_dir (which wins over --checkpoint_path)."""
  # Every worker resumes from the chief's newest checkpoint in train_dir (shared filesystem), though a
  # non-chief saves elsewhere: workers starting from different steps would mismatch their collectives.
  if latest and not chief:
    with strategy.scope():  # as Orbit restores on the chief: same variable creations, same collectives
      manager.checkpoint.restore(latest)
  controller = orbit.Controller(
      global_step=trainer.global_step, trainer=trainer, strategy=strategy,
      steps_per_loop=trainer_lib.steps_per_loop(cfg.steps_per_loop, cfg.save_interval_steps),
      checkpoint_manager=manager, summary_dir=None, train_actions=actions)
  if latest:
    given = f" over --checkpoint_path={cfg.checkpoint_path}" if cfg.checkpoint_path else ""
    logging.warning("RESUMING from %s (step %d): a checkpoint in train_dir wins%s.", latest,
                    int(trainer.global_step.numpy()), given)
  return controller


def _init_fn(cfg, trainer):
  """No checkpoint in train_dir: --checkpoint_path (fine-tuning), else random initialization. Returns what the
  model was initialized from (run_info's `initialized_from`)."""
  model, ema_model = trainer.model, trainer.ema_model
  source = None
  if cfg.checkpoint_path:
    with errors.as_user_errors():
      source = checkpoints.restore_for_fine_tuning(
          model, cfg.checkpoint_path, model_name=cfg.model_name, exclude_scopes=cfg.checkpoint_exclude_scopes,
          ignore_missing_vars=cfg.ignore_missing_vars)
    logging.warning("FINE-TUNING: initialized from --checkpoint_path=%s (excluded scopes: %s).",
                    cfg.checkpoint_path, cfg.checkpoint_exclude_scopes or "none")
  else:
    logging.warning("RANDOM INIT: no checkpoint in %s and no --checkpoint_path.", cfg.train_dir)
  if ema_model is not None:
    ema_model.set_weights(model.get_weights())
  return source


def _train_loop(cfg, strategy, controller, manager, trainer, split, *, start_step, max_steps, latest, run_info,
                estimator, writer, lock, chief, ckpt_dir):
  """Orbit's loop to max_steps (SIGTERM/SIGINT: saved and recorded, then Preempted is raised again)."""
  global_step = trainer.global_step
  trainer.train_dataset = strategy.distribute_datasets_from_function(
      make_dataset_fn(cfg, split, start_step, split.num_classes))
  logging.info("Training %s on %s/%s (%d examples, %d classes) for %d steps, global batch %d over %d replica(s).",
               cfg.model_name, cfg.dataset_name, cfg.dataset_split_name, split.num_samples, split.num_classes,
               max_steps, cfg.batch_size, strategy.num_replicas_in_sync)
  if cfg.tf_data_service:
    logging.info("Input pipeline on the tf.data service %s (job %s): batches are not bit-reproducible across "
                 "runs and resumes.", cfg.tf_data_service, data_service.job_name(cfg.train_dir, start_step))
  wall_start = time.time()
  try:
    # SIGTERM/SIGINT: save at the end of the current loop of steps and stop (slimflowers/train/preemption.py).
    with preemption.Watcher(strategy, manager, global_step,
                            multi_worker=devices.is_multi_worker(strategy)) as watcher, \
        preemption.service_watchdog(cfg, manager, global_step, writer, lock, PROGRAM) as watchdog:
      controller.train_actions += (watcher.action, watchdog.progress)
      if start_step < max_steps:
        controller.train(steps=max_steps, checkpoint_at_completion=True)
      elif manager.latest_checkpoint is None or manager.latest_checkpoint != latest:
        manager.save(checkpoint_number=start_step, check_interval=False)
  except preemption.Preempted:
    metadata.record_time(run_info, trainer, cfg, wall_start)  # the next process adds its own time to this
    run_info["precise_bn_secs"] = run_info.get("precise_bn_secs", 0.0) + estimator.secs
    if chief:
      run_dir.write_run_info(cfg.train_dir, run_info)
    raise
  finally:
    writer.flush()
    # Orbit keeps the input iterator alive; drop it now (a tf.data service job ends with it).
    trainer.train_dataset, trainer._train_iter = None, None  # pylint: disable=protected-access
    if not chief:
      fileio.rmtree(ckpt_dir)
  metadata.record_time(run_info, trainer, cfg, wall_start)


def warn_about_image_sizes(cfg, sizes, resize_to=None):
  """Warnings that teach, from the converter's records: heavy upsampling, crops below a few pixels."""
  if resize_to and cfg.train_image_size > resize_to:
    logging.warning("--train_image_size=%d exceeds the %d px the dataset's images were stored at "
                    "(download_and_convert_data.py --resize_to=%d): they are upsampled. Re-convert with a larger "
                    "--resize_to, or train at %d.", cfg.train_image_size, resize_to, resize_to, resize_to)
  if not sizes:
    return
  median_side = min(sizes["height"]["median"], sizes["width"]["median"])
  if cfg.train_image_size > 2 * median_side:
    logging.warning("--train_image_size=%d is more than twice the median image side (%d px): images are heavily "
                    "upsampled. Train at a size near %d (--train_image_size) for the same accuracy in less time.",
                    cfg.train_image_size, median_side, median_side)
  min_area = preprocessing.crop_area_range(cfg)[0] if cfg.preprocessing_name == "inception" else None
  if min_area is not None and math.sqrt(min_area) * median_side < preprocessing.MIN_CROP_SOURCE_PX:
    logging.warning("The inception crop may keep only %.0f%% of an image's area, about %.0f px of a median "
                    "%d px side: too little to recognize anything. Raise the minimum, e.g. "
                    "--crop_area_range=0.25,1.0, or use --preprocessing_name=cifarnet for small images.",
                    100 * min_area, math.sqrt(min_area) * median_side, median_side)


def _write_image_summary(writer, split, cfg):
  ds = input_pipeline.train_dataset(split, batch_size=NUM_SUMMARY_IMAGES, image_size=cfg.train_image_size,
                                    preprocessing_name=cfg.preprocessing_name, seed=cfg.seed,
                                    augment=cfg.augment, random_erasing=cfg.random_erasing,
                                    color_distortion=cfg.color_distortion, random_flip=cfg.random_flip,
                                    crop_area_range=preprocessing.crop_area_range(cfg))
  images, _ = next(iter(ds))
  with writer.as_default(step=0):
    tf.summary.image("input_images", preprocessing.denormalize(images, cfg.preprocessing_name),
                     max_outputs=NUM_SUMMARY_IMAGES)
