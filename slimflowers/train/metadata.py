"""What a training run writes about itself: run_info.json's contents, its HParams, its timing and GFLOPs.

    info = metadata.initial(cfg, split, model, trainer.train_variables, num_replicas, max_steps, source)
    metadata.start(cfg, info, decision, previous, num_replicas=..., chief=True)   # run_info.json, flags.txt, HParams
    ... the loop ...
    metadata.record_time(info, trainer, cfg, wall_start)
    metadata.finish(cfg, info, model, precise_bn_secs=..., final_step=..., chief=True)

What the run remembers of its flags and what a new command may do with it is slimflowers/train/run_record.py;
the fields are listed in ARCHITECTURE.md ("Checkpoints").
"""
import time

from absl import logging
import numpy as np

import nets
from slimflowers.core import run_dir
from slimflowers.data import preprocessing
from slimflowers.train import flags as train_flags
from slimflowers.train import hparams
from slimflowers.train import run_record


def hparams_of(cfg, num_replicas):
  """The run's HParams, what a reader compares first first (the HPARAMS tab keeps this order)."""
  return {
      "model": nets.get_spec(cfg.model_name).name, "image_size": cfg.train_image_size, "optimizer": cfg.optimizer,
      "learning_rate": cfg.learning_rate, "lr_schedule": cfg.learning_rate_decay_type, "batch_size": cfg.batch_size,
      "dataset": cfg.dataset_name, "weight_decay": cfg.weight_decay, "preprocessing": cfg.preprocessing_name,
      "augment": cfg.augment,
      "color_distortion": cfg.color_distortion, "random_flip": bool(cfg.random_flip),
      "crop_area_range": ",".join(f"{v:g}" for v in preprocessing.crop_area_range(cfg)),
      "mixup_alpha": cfg.mixup_alpha, "cutmix_alpha": cfg.cutmix_alpha, "label_smoothing": cfg.label_smoothing,
      "precision": cfg.precision,
      "replicas": num_replicas, "moving_average_decay": cfg.moving_average_decay or 0.0,
  }


def initial(cfg, split, model, train_variables, num_replicas, max_steps, source):
  """run_info.json as a run starts: what it trains, on what, how (`source`: what it was initialized from)."""
  return {
      "model_name": nets.get_spec(cfg.model_name).name, "dataset_name": cfg.dataset_name,
      "dataset_dir": cfg.dataset_dir,
      "dataset_split_name": cfg.dataset_split_name, "num_examples": split.num_samples,
      "num_classes": split.num_classes, "class_names": [split.labels_to_names[i] for i in range(split.num_classes)],
      "image_size": cfg.train_image_size,
      "preprocessing_name": cfg.preprocessing_name, "model_overrides": train_flags.model_overrides(cfg),
      "batch_size": cfg.batch_size,
      "num_replicas": num_replicas, "precision": cfg.precision,
      "trainable_params": nets.trainable_parameter_count(model),
      "trained_params": int(sum(np.prod(v.shape) for v in train_variables)),
      "hparams": hparams_of(cfg, num_replicas), "max_steps": max_steps, "initialized_from": source,
      "finished": False,
      "timed_steps": 0, "timed_secs": 0, "train_wall_secs": 0, "precise_bn_secs": 0.0,
  }


def start(cfg, run_info, decision, previous, *, num_replicas, start_step, max_steps, chief):
  """Completes `run_info` with the run's record (run_record says what may be written) and writes it, with
  flags.txt for a new run and its HParams; an extended run's continuation is recorded and logged."""
  if decision.action == run_record.NEW:
    if chief:
      run_dir.write_flags(cfg.train_dir, vars(cfg))
    run_info.update(run_record.new_record(train_flags.training_values(cfg),
                                          run_record.flags_txt_sha256(cfg.train_dir)))
  else:
    # Time already spent by earlier (killed) processes of this run carries over, and the record stays.
    run_info.update(run_record.carried_over(previous))
  if decision.action == run_record.EXTEND:
    run_info["continuations"] = list(run_info.get("continuations", [])) + [decision.continuation]
    logging.warning("CONTINUING %s from step %d to step %d (it was trained for %d steps); recorded in %s.",
                    cfg.train_dir, start_step, max_steps, decision.continuation["max_steps"][0], run_dir.RUN_INFO)
    if chief and decision.write_flags_txt:
      run_dir.write_flags(cfg.train_dir, vars(cfg))
      run_info["flags_txt_sha256"] = run_record.flags_txt_sha256(cfg.train_dir)
  if chief:
    run_dir.write_run_info(cfg.train_dir, run_info)
    if decision.action == run_record.NEW:
      hparams.log_hparams(cfg.train_dir, hparams_of(cfg, num_replicas), metrics=["accuracy", "total_loss"])


def record_time(run_info, trainer, cfg, wall_start):
  """Adds this process's compile-free training time and wall time to run_info (which holds the earlier ones)."""
  t_steps = run_info["timed_steps"] + trainer.timing["steps"]
  t_secs = run_info["timed_secs"] + trainer.timing["secs"]
  run_info.update({
      "train_wall_secs": run_info["train_wall_secs"] + (time.time() - wall_start),
      "timed_steps": t_steps, "timed_secs": t_secs,
      "sec_per_step": (t_secs / t_steps) if t_steps else None,
      "images_per_sec": (t_steps * cfg.batch_size / t_secs) if t_secs else None,
      "steps_per_hour": (3600.0 * t_steps / t_secs) if t_secs else None,
  })


def finish(cfg, run_info, model, *, final_step, chief):
  """`finished` right after the final checkpoint, before anything else (run_info.json); then the GFLOPs."""
  run_info.update({"final_step": int(final_step), "finished": True})
  if chief:
    run_dir.write_run_info(cfg.train_dir, run_info)
  run_info["gflops"] = gflops(cfg, model)
  if chief:
    run_dir.write_run_info(cfg.train_dir, run_info)


def gflops(cfg, model):
  try:
    return nets.gflops(model, cfg.train_image_size)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("Could not count GFLOPs for %s: %s", cfg.model_name, e)
    return None
