"""Optimizers and learning-rate schedules, TF-Slim's flags on Keras 3 objects.

    sched = optim.LearningRateSchedule("exponential", 0.01, decay_steps=100, decay_factor=0.94)
    opt = optim.create_optimizer("rmsprop", sched, **optim.optimizer_options(cfg))   # cfg: the resolved flags

Decay is counted in global steps computed from epochs of the dataset's real size
(`steps_per_epoch = num_samples / global_batch`), so it does not depend on the
replica count.
"""
import math

import keras
import tensorflow as tf

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
# --opt_epsilon left unset: TF-Slim's 1.0 where it was tuned (rmsprop); Keras' 1e-7 for Adam, where
# 1.0 swamps the second-moment estimate and Adam degenerates into slow SGD.
DEFAULT_EPSILON = {"rmsprop": 1.0, "adam": 1e-7, "adamw": 1e-7}
DECAY_TYPES = ("fixed", "exponential", "polynomial", "cosine")


@keras.saving.register_keras_serializable(package="slimflowers")
class LearningRateSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup, then TF-Slim's fixed / exponential (staircase) / polynomial, or cosine decay.

  `decay_steps` means: the staircase period for exponential; the decay length
  for polynomial and cosine (counted after warmup).
  """

  def __init__(self, decay_type, learning_rate, *, decay_steps=1, decay_factor=0.94,
               end_learning_rate=0.0, warmup_steps=0):
    if decay_type not in DECAY_TYPES:
      raise ValueError(f"--learning_rate_decay_type={decay_type!r} is not one of {DECAY_TYPES}.")
    if learning_rate <= 0:
      raise ValueError(f"--learning_rate={learning_rate} must be > 0.")
    self.decay_type = decay_type
    self.learning_rate = float(learning_rate)
    self.decay_steps = max(1, int(decay_steps))
    self.decay_factor = float(decay_factor)
    self.end_learning_rate = float(end_learning_rate)
    self.warmup_steps = max(0, int(warmup_steps))

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    base = tf.constant(self.learning_rate, tf.float32)
    end = tf.constant(self.end_learning_rate, tf.float32)
    t = tf.maximum(step - self.warmup_steps, 0.0)
    n = float(self.decay_steps)
    if self.decay_type == "fixed":
      lr = base
    elif self.decay_type == "exponential":
      lr = base * tf.pow(self.decay_factor, tf.floor(t / n))
    elif self.decay_type == "polynomial":  # TF-Slim: power 1.0, no cycling
      lr = (base - end) * (1.0 - tf.minimum(t, n) / n) + end
    else:  # cosine
      lr = end + 0.5 * (base - end) * (1.0 + tf.cos(math.pi * tf.minimum(t, n) / n))
    if self.warmup_steps:
      warm = base * (step + 1.0) / float(self.warmup_steps)
      lr = tf.where(step < self.warmup_steps, warm, lr)
    return lr

  def get_config(self):
    return dict(decay_type=self.decay_type, learning_rate=self.learning_rate,
                decay_steps=self.decay_steps, decay_factor=self.decay_factor,
                end_learning_rate=self.end_learning_rate, warmup_steps=self.warmup_steps)


def schedule_from_flags(flags, *, steps_per_epoch, max_steps):
  """Builds the schedule; epochs are global epochs of the dataset's real size."""
  warmup_steps = int(round(flags.warmup_epochs * steps_per_epoch))
  if flags.learning_rate_decay_type == "exponential":
    decay_steps = int(round(flags.num_epochs_per_decay * steps_per_epoch))
  else:
    decay_steps = max_steps - warmup_steps
  return LearningRateSchedule(
      flags.learning_rate_decay_type, flags.learning_rate, decay_steps=decay_steps,
      decay_factor=flags.learning_rate_decay_factor, end_learning_rate=flags.end_learning_rate,
      warmup_steps=warmup_steps)


# The optimizer hyper-parameters that come from flags (train_flags.py holds their defaults).
OPTIMIZER_OPTIONS = ("momentum", "rmsprop_decay", "rmsprop_momentum", "opt_epsilon", "adam_beta1", "adam_beta2",
                     "adamw_weight_decay")


def optimizer_options(cfg):
  """{option: value} of OPTIMIZER_OPTIONS from a config namespace (the resolved flags)."""
  return {k: getattr(cfg, k) for k in OPTIMIZER_OPTIONS}


def create_optimizer(name, learning_rate, *, momentum, rmsprop_decay, rmsprop_momentum, opt_epsilon, adam_beta1,
                     adam_beta2, adamw_weight_decay):
  """A Keras 3 optimizer; every hyper-parameter comes from the caller (defaults: train_flags.py, once).

  `opt_epsilon=None` means the optimizer's own default (DEFAULT_EPSILON).
  """
  if opt_epsilon is None:
    opt_epsilon = DEFAULT_EPSILON.get(name)
  if name == "sgd":
    return keras.optimizers.SGD(learning_rate)
  if name == "momentum":
    return keras.optimizers.SGD(learning_rate, momentum=momentum)
  if name == "rmsprop":
    return keras.optimizers.RMSprop(learning_rate, rho=rmsprop_decay, momentum=rmsprop_momentum,
                                    epsilon=opt_epsilon)
  if name == "adam":
    return keras.optimizers.Adam(learning_rate, beta_1=adam_beta1, beta_2=adam_beta2, epsilon=opt_epsilon)
  if name == "adamw":
    return keras.optimizers.AdamW(learning_rate, weight_decay=adamw_weight_decay, beta_1=adam_beta1,
                                  beta_2=adam_beta2, epsilon=opt_epsilon)
  raise ValueError(f"--optimizer={name!r} is not one of {OPTIMIZERS}.")
