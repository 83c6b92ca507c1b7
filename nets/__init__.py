"""The study's networks behind one TF-Slim-style interface, in one registry.

    import nets
    model = nets.get_model("resnet50", num_classes=102)           # alias of resnet_v1_50
    logits = model(images)                                         # [B, 102] float32
    features = nets.get_model("xception", 0)(images)               # [B, 2048] pooled features
    nets.get_spec("mobilenet").preprocessing                       # "inception" ([-1, 1])

`python -m nets` prints every net with its parameter count and GFLOPs.

Each file in this package builds one net or family and registers it with
`@register(...)`; the registry is one plain dict, so one entry carries
everything about a net (builder, sizes, preprocessing, aliases, overrides).
Where keras.applications has the architecture we build on it (same layers,
same names, same ImageNet weight files); this package adds what TF-Slim had:
a `num_classes` head named `logits` (so `--checkpoint_exclude_scopes=logits`
works by prefix on `variable.path`), Inception-v3's auxiliary head, overrides
for dropout and batch norm, any input size the architecture allows, and the
choice of weight-decayed variables.
"""
import sys

if sys.argv[:1] == ["-m"]:  # `python -m nets` is importing this package: quiet TensorFlow before Keras loads it,
  from slimflowers.core import cli  # pylint: disable=g-import-not-at-top,unused-import  as every entry script does.

import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-order
from typing import Callable, Optional  # pylint: disable=g-import-not-at-top,wrong-import-order

from absl import logging
import keras
import numpy as np

from nets import nets_utils

# Overrides every net may accept; which ones a net accepts is in its NetSpec.
BATCH_NORM_OVERRIDES = ("batch_norm_momentum", "batch_norm_epsilon")
ALL_OVERRIDES = ("dropout_rate",) + BATCH_NORM_OVERRIDES + ("aux_logits",)
# Variable names (last part of `variable.path`) that TF-Slim-style L2 weight decay applies to.
_DECAYED_VARIABLE_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


@dataclasses.dataclass(frozen=True)
class NetSpec:
  """Everything about one registered net.

  builder(input_shape, num_classes, **net_overrides) -> keras.Model; batch-norm
  overrides are applied by `get_model`, so builders only see the others.
  weight_top: how a weight file's classification top maps onto our layers, as
  (Keras 3 class key, legacy layer name, our layer name) in file order.
  """
  name: str
  builder: Callable
  default_image_size: int
  min_image_size: int
  preprocessing: str  # a recipe of slimflowers/data/preprocessing.py (RECIPES; tests/test_layout.py checks it)
  aliases: tuple = ()
  keras_application: Optional[str] = None
  overrides: tuple = ("dropout_rate",) + BATCH_NORM_OVERRIDES
  weight_top: tuple = (("dense", "predictions", "logits"),)


_REGISTRY = {}  # name -> NetSpec
_ALIASES = {}   # alias -> name


def register(name, *, default_image_size, min_image_size, preprocessing, aliases=(),
             keras_application=None, overrides=("dropout_rate",) + BATCH_NORM_OVERRIDES,
             weight_top=(("dense", "predictions", "logits"),)):
  """Decorator registering `builder` under `name`; duplicate names or aliases raise."""
  unknown = set(overrides) - set(ALL_OVERRIDES)
  if unknown:
    raise ValueError(f"Net {name!r}: unknown overrides {sorted(unknown)}; known: {ALL_OVERRIDES}.")

  def decorator(builder):
    for key in (name,) + tuple(aliases):
      if key in _REGISTRY or key in _ALIASES:
        raise ValueError(f"Net name or alias {key!r} is already registered "
                         f"(by {_ALIASES.get(key, key)!r}); pick another name.")
    _REGISTRY[name] = NetSpec(name=name, builder=builder, default_image_size=default_image_size,
                              min_image_size=min_image_size, preprocessing=preprocessing,
                              aliases=tuple(aliases), keras_application=keras_application,
                              overrides=tuple(overrides), weight_top=tuple(weight_top))
    for alias in aliases:
      _ALIASES[alias] = name
    return builder

  return decorator


def list_models():
  """Registered canonical names, sorted (aliases are in each spec)."""
  return sorted(_REGISTRY)


def get_spec(name):
  """The NetSpec for a canonical name or alias."""
  key = _ALIASES.get(name, name)
  if key not in _REGISTRY:
    aliases = ", ".join(f"{a}->{n}" for a, n in sorted(_ALIASES.items()))
    raise ValueError(f"Unknown net {name!r}. Known nets: {', '.join(list_models())}; "
                     f"aliases: {aliases}.")
  return _REGISTRY[key]


def get_model(name, num_classes, *, weights=None, image_size=None, **overrides):
  """Builds net `name` as a Keras 3 model from preprocessed images [B, H, W, 3].

  Returns logits [B, num_classes] in float32 (also under mixed precision);
  `num_classes=0` returns pooled features [B, D]; Inception-v3 with
  `aux_logits=True` returns {"logits": ..., "aux_logits": ...}.
  image_size: None accepts any size >= the net's minimum; an int fixes it.
  weights: path to a keras.applications weight file (legacy HDF5 or Keras 3
    `.weights.h5`, with or without the top), see nets_utils.load_weights.
  overrides: dropout_rate, batch_norm_momentum, batch_norm_epsilon, aux_logits;
    an override left None keeps the net's default (as timm drops None kwargs).
  """
  spec = get_spec(name)
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 0:
    raise ValueError(f"num_classes={num_classes!r} for net {spec.name!r} must be an int >= 0 "
                     "(0 returns pooled features).")
  overrides = {k: v for k, v in overrides.items() if v is not None}
  unsupported = sorted(set(overrides) - set(spec.overrides))
  if unsupported:
    raise ValueError(f"Net {spec.name!r} does not support override(s) {unsupported}; "
                     f"it supports {list(spec.overrides)}.")
  if image_size is not None:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
      raise ValueError(f"image_size={image_size!r} for net {spec.name!r} must be an int or None.")
    if image_size < spec.min_image_size:
      raise ValueError(f"image_size={image_size} is below the minimum {spec.min_image_size} of net "
                       f"{spec.name!r}; use image_size >= {spec.min_image_size} "
                       f"(default {spec.default_image_size}).")
  input_shape = (image_size, image_size, 3)
  builder_kwargs = {k: v for k, v in overrides.items() if k not in BATCH_NORM_OVERRIDES}
  model = spec.builder(input_shape, int(num_classes), **builder_kwargs)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      # BatchNormalization reads these in call(), so setting them after building takes effect.
      if "batch_norm_momentum" in overrides:
        layer.momentum = float(overrides["batch_norm_momentum"])
      if "batch_norm_epsilon" in overrides:
        layer.epsilon = float(overrides["batch_norm_epsilon"])
  if weights:
    nets_utils.load_weights(model, spec, weights)
    logging.info("Net %s: loaded weights from %s", spec.name, weights)
  return model


def weight_decay_variables(model):
  """The trainable variables TF-Slim's L2 weight decay applies to: conv, depthwise and dense kernels.

  Biases, batch-norm gamma/beta and moving statistics are left out, as in TF-Slim's arg scopes.
  """
  return [v for v in model.trainable_variables if v.path.split("/")[-1] in _DECAYED_VARIABLE_NAMES]


def trainable_parameter_count(model):
  """Number of trainable scalars (what the study's table counts)."""
  return int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))


def gflops(model, image_size):
  """Forward GFLOPs for one image at `image_size`, counted from the TF graph by the v1 profiler.

  The profiler counts a multiply-add as 2 FLOPs, so this is about 2x the GMACs people quote.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  @tf.function
  def forward(images):
    return model(images, training=False)

  concrete = forward.get_concrete_function(tf.TensorSpec([1, image_size, image_size, 3], tf.float32))
  opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  opts["output"] = "none"
  verbosity = tf.compat.v1.logging.get_verbosity()
  tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)  # v1-API deprecation notices
  try:
    info = tf.compat.v1.profiler.profile(graph=concrete.graph, run_meta=tf.compat.v1.RunMetadata(),
                                         cmd="op", options=opts)
  finally:
    tf.compat.v1.logging.set_verbosity(verbosity)
  return info.total_float_ops / 1e9


# Each module registers its nets on import.
from nets import alexnet  # pylint: disable=g-import-not-at-top,wrong-import-position
from nets import cifarnet  # pylint: disable=g-import-not-at-top,wrong-import-position
from nets import inception  # pylint: disable=g-import-not-at-top,wrong-import-position
from nets import mobilenet  # pylint: disable=g-import-not-at-top,wrong-import-position
from nets import resnet_v1  # pylint: disable=g-import-not-at-top,wrong-import-position
from nets import vgg  # pylint: disable=g-import-not-at-top,wrong-import-position
from nets import xception  # pylint: disable=g-import-not-at-top,wrong-import-position

from nets.endpoints import endpoints_model  # pylint: disable=g-import-not-at-top,wrong-import-position
