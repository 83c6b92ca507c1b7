"""The training flags: TF-Slim's names and defaults, defined in exactly one place.

    train_flags.define_flags()
    cfg = train_flags.from_flags()                       # after absl parsed the command line
    cfg = train_flags.config(model_name="cifarnet")      # the defaults with overrides (tests, benches)

A flag left unset (None) means "the net's or the dataset's default": the
resolved values are written to TRAIN_DIR/flags.txt. The set of flags that
describe a run is whatever this module defines (`flag_names()`): nothing to
keep in sync by hand.
"""
import copy
import sys
import types

from absl import flags

import nets
from slimflowers.core import devices
from slimflowers.core import run_dir
from slimflowers.data import input_pipeline
from slimflowers.data import preprocessing
from slimflowers.train import optim


# PreciseBN's batches per checkpoint: the fewest within one point of 200 batches on both measured folders
# (BENCHMARKS.md, "Batch-norm statistics": 20 batches were 1.3 points short on the digits).
PRECISE_BN_BATCHES = 50

# Flags that do not change what is trained -- logging and summaries, checkpoint cadence, devices, where the
# input pipeline runs -- so a run may be resumed with other values. Every other flag changes the training: a
# train_dir refuses a command that changes one (slimflowers/train/run_record.py). A new flag changes the training
# unless it is added here.
BOOKKEEPING_FLAGS = ("train_dir", "log_every_n_steps", "save_summaries_steps", "save_interval_steps",
                     "save_interval_secs", "max_checkpoints_to_keep", "steps_per_loop", "num_gpus",
                     "num_cpu_replicas", "jit_compile", "tf_data_service", "tf_data_service_timeout_secs",
                     "decoded_cache_mb")


def define_dataset_flags(split_name, split_help):
  """--dataset_name, --dataset_dir and --dataset_split_name (the trainer's and the evaluator's)."""
  flags.DEFINE_string("dataset_name", "synthetic_flowers", "Dataset name (see datasets.list_datasets()).")
  flags.DEFINE_string("dataset_dir", None, "Directory written by download_and_convert_data.py.")
  flags.DEFINE_string("dataset_split_name", split_name, split_help)


def define_device_flags(num_gpus_note=""):
  """--num_gpus and --num_cpu_replicas, what devices.create_strategy takes (the trainer's and the evaluator's)."""
  flags.DEFINE_integer("num_gpus", None, f"GPUs to use (default: all visible; 0: CPU{num_gpus_note}).")
  flags.DEFINE_integer("num_cpu_replicas", 0, "Split the CPU into N logical replicas (for tests on CPU).")


def define_flags():
  """Defines the trainer's flags on absl's global FLAGS (idempotent per process)."""
  if "train_dir" in flags.FLAGS:
    return
  _define_run_flags()
  _define_optimization_flags()
  _define_augmentation_flags()
  _define_devices_flags()
  _define_fine_tuning_flags()


def _define_run_flags():
  """Run flags."""
  flags.DEFINE_string("train_dir", None, f"Where checkpoints, summaries, {run_dir.FLAGS_TXT} and "
                      f"{run_dir.RUN_INFO} go.")
  define_dataset_flags(split_name="train", split_help="Split to train on.")
  flags.DEFINE_string("model_name", "inception_v3", "Network name or alias (python -m nets lists them).")
  flags.DEFINE_enum("preprocessing_name", None, preprocessing.PREPROCESSING_NAMES,
                    "TF-Slim's preprocessing_factory recipe; default: the net's.")
  flags.DEFINE_integer("train_image_size", None, "Training image size; default: the net's.")
  flags.DEFINE_integer("batch_size", 32, "Global batch size (split over all replicas).")
  flags.DEFINE_integer("max_number_of_steps", None, "Train until this global step.")
  flags.DEFINE_float("num_epochs", None, "Train for this many epochs of the split (if no max_number_of_steps).")
  flags.DEFINE_integer("log_every_n_steps", 10, "Console log period, in steps.")
  flags.DEFINE_integer("save_interval_steps", None, "Checkpoint every N steps.")
  flags.DEFINE_integer("save_interval_secs", 600, "Checkpoint every N seconds (TF-Slim's default 600).")
  flags.DEFINE_integer("max_checkpoints_to_keep", 20,
                       "Checkpoints kept; generous so a continuous evaluator never loses one it is about to read.")
  flags.DEFINE_integer("save_summaries_steps", None, "TensorBoard summary period in steps; default log_every_n_steps.")
  flags.DEFINE_integer("seed", 0, "Seed for initialization, data order and augmentation.")


def _define_optimization_flags():
  """Optimization flags."""
  flags.DEFINE_enum("optimizer", "rmsprop", optim.OPTIMIZERS, "Optimizer (TF-Slim's default: rmsprop).")
  flags.DEFINE_float("momentum", 0.9, "Momentum for the momentum optimizer.")
  flags.DEFINE_float("rmsprop_decay", 0.9, "RMSprop decay (rho).")
  flags.DEFINE_float("rmsprop_momentum", 0.9, "RMSprop momentum.")
  flags.DEFINE_float("opt_epsilon", None, "Optimizer epsilon; default per optimizer (optim.DEFAULT_EPSILON): "
                     "TF-Slim's 1.0 for rmsprop, 1e-7 for adam/adamw (1.0 turns Adam into slow SGD).")
  flags.DEFINE_float("adam_beta1", 0.9, "Adam beta1.")
  flags.DEFINE_float("adam_beta2", 0.999, "Adam beta2.")
  flags.DEFINE_float("adamw_weight_decay", 0.01, "Decoupled weight decay for adamw.")
  flags.DEFINE_float("learning_rate", 0.01, "Initial learning rate.")
  flags.DEFINE_enum("learning_rate_decay_type", "exponential", optim.DECAY_TYPES, "Learning-rate schedule.")
  flags.DEFINE_float("learning_rate_decay_factor", 0.94, "Exponential decay factor.")
  flags.DEFINE_float("num_epochs_per_decay", 2.0, "Epochs between exponential decays.")
  flags.DEFINE_float("end_learning_rate", 0.0001, "Final learning rate for polynomial and cosine decay.")
  flags.DEFINE_float("warmup_epochs", 0.0, "Linear warmup length in epochs.")
  flags.DEFINE_float("weight_decay", 0.00004, "L2 regularization on the kernels the net names (TF-Slim's default).")
  flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.")
  flags.DEFINE_float("moving_average_decay", None, "If set, keep an EMA of the weights (saved as ema_model).")
  flags.DEFINE_float("clip_gradient_norm", 0.0, "Clip the global gradient norm to this (0: off).")


def _define_augmentation_flags():
  """Augmentation flags."""
  flags.DEFINE_enum("augment", "none", input_pipeline.AUGMENT_NAMES, "Extra augmentation from official.vision.ops.augment.")
  flags.DEFINE_enum("color_distortion", "fast", preprocessing.COLOR_DISTORTIONS,
                    "Inception preprocessing's colour distortion: fast (TF-Slim's default fast_mode: brightness + "
                    "saturation), full (+ hue + contrast) or none.")
  flags.DEFINE_integer("decoded_cache_mb", 1024, "When the training split decodes to at most this many MiB, decode "
                       "every image once and augment the cached pixels (no JPEG decoding per step; the same "
                       "augmentation and exact resume). 0: off.")
  flags.DEFINE_bool("random_flip", True, "Random left-right flips (every preprocessing). Turn off for text, "
                    "digits, scans: anything whose mirror image is another class.")
  flags.DEFINE_list("crop_area_range", None, "MIN,MAX area fraction of the inception random crop; default TF-Slim's "
                    "0.05,1.0. Raise MIN (e.g. 0.25,1.0) for small or centred objects.")
  flags.DEFINE_float("mixup_alpha", 0.0, "Mixup alpha (0: off).")
  flags.DEFINE_float("cutmix_alpha", 0.0, "CutMix alpha (0: off).")
  flags.DEFINE_float("random_erasing", 0.0, "Random-erasing probability (0: off).")
  flags.DEFINE_bool("aux_logits", None, "Switch on the net's auxiliary head (Inception-v3); its loss weighs 0.4.")
  flags.DEFINE_float("dropout_rate", None, "Override the net's head dropout rate.")
  flags.DEFINE_float("batch_norm_momentum", None, "Override the net's batch-norm momentum (TF-Slim's "
                     "batch_norm_decay). It shapes only the moving averages between checkpoints: every checkpoint's "
                     "statistics are re-estimated (--precise_bn_batches), and training normalizes with each batch's "
                     "own statistics whatever the momentum.")
  flags.DEFINE_float("batch_norm_epsilon", None, "Override the net's batch-norm epsilon.")
  flags.DEFINE_integer("precise_bn_batches", PRECISE_BN_BATCHES, "Before every checkpoint, re-estimate the batch-norm "
                       "statistics with the current weights over this many training batches (PreciseBN; "
                       "slimflowers/train/precise_bn.py), so evaluation, export and predict use statistics that match "
                       "the weights. 0: off (Keras' moving averages, which lag the weights in short runs).",
                       lower_bound=0)


def _define_devices_flags():
  """Devices flags."""
  define_device_flags()
  flags.DEFINE_enum("precision", "float32", devices.PRECISIONS, "Compute precision.")
  flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step (faster on GPU, slower on CPU).")
  flags.DEFINE_integer("steps_per_loop", None, "Steps per tf.function call; default the smallest of "
                       "--log_every_n_steps, --save_summaries_steps and --save_interval_steps.")
  flags.DEFINE_string("tf_data_service", None, "grpc://HOST:PORT of a tf.data service dispatcher (python -m "
                      "slimflowers.data_service): decoding and augmentation run on its workers. Not bit-exact.")
  flags.DEFINE_integer("tf_data_service_timeout_secs", 60, "With --tf_data_service: a dispatcher that does not "
                       "answer for this long (at start-up, or while training: then after saving a checkpoint) "
                       "stops the trainer with an error.")


def _define_fine_tuning_flags():
  """Fine-tuning flags."""
  flags.DEFINE_string("checkpoint_path", None,
                      "Initialize from: one of our checkpoints or train dirs, or a keras.applications weight file. "
                      "Ignored (loudly) when train_dir already has a checkpoint: resume wins.")
  flags.DEFINE_list("checkpoint_exclude_scopes", [], "Variable-path prefixes NOT restored from --checkpoint_path.")
  flags.DEFINE_list("trainable_scopes", [], "Only variables under these path prefixes are trained.")
  flags.DEFINE_bool("ignore_missing_vars", False, "Leave variables missing from --checkpoint_path at init.")


def flag_names():
  """Every flag define_flags() defines, in definition order (they describe a run: flags.txt, HParams)."""
  define_flags()
  return [f.name for f in flags.FLAGS.get_flags_for_module(sys.modules[__name__])]


def from_flags():
  """The parsed values of every training flag, as a namespace."""
  return types.SimpleNamespace(**{name: flags.FLAGS[name].value for name in flag_names()})


def parse(args):
  """The values of every training flag for the command-line arguments `args` ("--name=value", ...), parsed as
  the trainer would parse them, without touching absl's global FLAGS."""
  values = flags.FlagValues()
  for name in flag_names():
    values[name] = copy.deepcopy(flags.FLAGS[name])
  values(["train_image_classifier.py"] + list(args))
  return types.SimpleNamespace(**{name: values[name].value for name in flag_names()})


def spell(value):
  """A flag value as flags.txt and the run's record spell it: None, "True"/"False", "a,b" for lists, str()."""
  if value is None:
    return None
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value)
  return str(value)


def training_values(cfg):
  """{name: spelled value} of the flags that change the training (all but BOOKKEEPING_FLAGS), from `cfg`."""
  return {name: spell(getattr(cfg, name)) for name in flag_names() if name not in BOOKKEEPING_FLAGS}


def model_overrides(cfg):
  """{name: value} of the net overrides (nets.ALL_OVERRIDES) the flags set; unset ones keep the net's default."""
  return {k: getattr(cfg, k) for k in nets.ALL_OVERRIDES if getattr(cfg, k) is not None}


def config(**overrides):
  """The flags' defaults with `overrides`, as a namespace (no command line needed); unknown names raise."""
  names = flag_names()
  unknown = sorted(set(overrides) - set(names))
  if unknown:
    raise ValueError(f"Unknown training flag(s) {unknown}; see slimflowers/train/flags.py.")
  values = {name: flags.FLAGS[name].default for name in names}
  values.update(overrides)
  return types.SimpleNamespace(**values)
