"""Devices and distribution: one place that turns flags into a tf.distribute strategy.

    strategy = devices.create_strategy(num_gpus=None, num_cpu_replicas=2)
    print(strategy.num_replicas_in_sync)   # 2 on a CPU-only machine

- GPUs: MirroredStrategy over all visible GPUs (or the first `num_gpus`), memory
  growth on, so an evaluator can run beside a trainer without exhausting memory.
- CPU: `num_cpu_replicas=N > 1` splits the CPU into N logical devices so the
  multi-replica code paths run (and are tested) on machines without GPUs.
- Multi-worker: when TF_CONFIG names more than one worker,
  MultiWorkerMirroredStrategy (worker 0 is the chief).
Must run before any other TensorFlow op initializes the runtime.
"""
import json
import os

from absl import logging
import tensorflow as tf

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")



def _tf_config_workers():
  cfg = os.environ.get("TF_CONFIG")
  if not cfg:
    return 0
  try:
    return len(json.loads(cfg).get("cluster", {}).get("worker", []))
  except (ValueError, AttributeError) as e:
    raise ValueError(f"TF_CONFIG is not valid JSON with a cluster.worker list: {cfg!r}. "
                     "Fix it or unset TF_CONFIG for single-machine training.") from e


def configure_gpus(num_gpus=None):
  """Enables memory growth and limits visible GPUs to the first `num_gpus` (None: all, 0: none)."""
  gpus = tf.config.list_physical_devices("GPU")
  if num_gpus is not None:
    if num_gpus < 0:
      raise ValueError(f"--num_gpus={num_gpus} must be >= 0 (0 runs on the CPU).")
    if num_gpus > len(gpus):
      raise ValueError(f"--num_gpus={num_gpus} but only {len(gpus)} GPU(s) are visible: {gpus}. "
                       "Lower --num_gpus or check CUDA_VISIBLE_DEVICES.")
    gpus = gpus[:num_gpus]
    tf.config.set_visible_devices(gpus, "GPU")
  for gpu in gpus:
    try:
      tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # runtime already initialized; growth was set earlier or cannot be set now
      pass
  return gpus


def split_cpu(num_cpu_replicas):
  """Splits the physical CPU into `num_cpu_replicas` logical devices (idempotent)."""
  cpus = tf.config.list_physical_devices("CPU")
  current = tf.config.get_logical_device_configuration(cpus[0])
  if current and len(current) == num_cpu_replicas:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_cpu_replicas)
  except RuntimeError as e:
    raise RuntimeError(
        f"Cannot split the CPU into {num_cpu_replicas} logical devices: TensorFlow was already "
        "initialized in this process. Call devices.create_strategy() before any other TF op.") from e


def create_strategy(num_gpus=None, num_cpu_replicas=0):
  """Returns the strategy for this machine: multi-worker, multi-GPU, or (logical) CPU replicas."""
  if num_cpu_replicas < 0:
    raise ValueError(f"--num_cpu_replicas={num_cpu_replicas} must be >= 0.")
  if _tf_config_workers() > 1:
    configure_gpus(num_gpus)
    if num_cpu_replicas > 1 and not tf.config.list_physical_devices("GPU"):
      split_cpu(num_cpu_replicas)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    logging.info("MultiWorkerMirroredStrategy: %d replicas in sync", strategy.num_replicas_in_sync)
    return strategy
  gpus = configure_gpus(num_gpus)
  if gpus:
    devices = [f"/gpu:{i}" for i in range(len(gpus))]
  elif num_cpu_replicas > 1:
    split_cpu(num_cpu_replicas)
    devices = [f"/cpu:{i}" for i in range(num_cpu_replicas)]
  else:
    devices = ["/cpu:0"]
  strategy = tf.distribute.MirroredStrategy(
      devices=devices,
      # The default NCCL all-reduce only exists on GPU.
      cross_device_ops=None if gpus else tf.distribute.ReductionToOneDevice())
  logging.info("MirroredStrategy over %s (%d replicas)", devices, strategy.num_replicas_in_sync)
  return strategy


def is_multi_worker(strategy):
  """True under MultiWorkerMirroredStrategy with more than one worker."""
  resolver = getattr(strategy, "cluster_resolver", None)
  return resolver is not None and len(resolver.cluster_spec().as_dict().get("worker", [])) > 1


def is_chief(strategy):
  """True on the worker that writes checkpoints and summaries (always true on one machine)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0
                                                   and "chief" not in resolver.cluster_spec().as_dict())


def set_precision(precision):
  """Sets the Keras global dtype policy; returns the policy name."""
  import keras  # pylint: disable=g-import-not-at-top
  if precision not in PRECISIONS:
    raise ValueError(f"--precision={precision!r} is not one of {PRECISIONS}.")
  keras.mixed_precision.set_global_policy(precision)
  return precision
