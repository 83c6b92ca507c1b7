"""Shared pieces of the nets: the `logits` head, keras.applications backbones, weight files.

Head layers are all named `logits...` (and `aux_logits...` for Inception-v3's
auxiliary head) so a restore or a training run can exclude or select them by a
prefix of `variable.path`, as TF-Slim's `--checkpoint_exclude_scopes=logits`.

Weight files: `load_weights` reads the files users have for ImageNet fine-tuning
(keras.applications' legacy HDF5 files, with or without the top, and Keras 3
`.weights.h5` files saved from keras.applications models) with h5py and assigns
them layer by layer in the file's order, which is the order keras.applications
itself loads them in (its auto-named layers, e.g. InceptionV3's `conv2d_12`,
differ between sessions, so names cannot be matched). Every shape is checked
before anything is assigned; a file that does not fit leaves the model untouched
and raises naming the first mismatching layer and both shapes.
"""
import os

from absl import logging
import h5py
import keras
# The Keras 3 weight format names layer groups with this function; reuse it to stay identical.
from keras.src.utils import naming as keras_naming
import numpy as np

HEAD_PREFIXES = ("logits", "aux_logits")


def is_head_layer(layer):
  return layer.name.startswith(HEAD_PREFIXES)


def application_backbone(app_name, input_shape, **kwargs):
  """keras.applications' `app_name` without its top, random weights, feature map output."""
  app = getattr(keras.applications, app_name)
  return app(include_top=False, weights=None, input_shape=input_shape, pooling=None, **kwargs)


def logits_head(features, num_classes, dropout_rate, *, conv=False,
                kernel_initializer="glorot_uniform", bias_initializer="zeros"):
  """Global average pool -> dropout -> logits, as keras.applications' top without the softmax.

  features: a [B, h, w, C] feature map. num_classes=0 returns the pooled
  features [B, C]. conv=True reproduces MobileNet v1's top (1x1 conv on the
  pooled map, then reshape) so its `conv_preds` weights fit our `logits`.
  Layers after the logits run in float32 so logits stay float32 under mixed precision.
  """
  if num_classes == 0:
    return keras.layers.GlobalAveragePooling2D(name="global_pool")(features)
  if conv:
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="logits_pool")(features)
    x = keras.layers.Dropout(dropout_rate, name="logits_dropout")(x)
    x = keras.layers.Conv2D(num_classes, 1, padding="same", name="logits", dtype="float32",
                            kernel_initializer=kernel_initializer,
                            bias_initializer=bias_initializer)(x)
    return keras.layers.Reshape((num_classes,), name="logits_reshape", dtype="float32")(x)
  x = keras.layers.GlobalAveragePooling2D(name="logits_pool")(features)
  x = keras.layers.Dropout(dropout_rate, name="logits_dropout")(x)
  return keras.layers.Dense(num_classes, name="logits", dtype="float32",
                            kernel_initializer=kernel_initializer,
                            bias_initializer=bias_initializer)(x)


def application_model(spec_name, app_name, input_shape, num_classes, dropout_rate, *,
                      conv_head=False, **app_kwargs):
  """keras.applications backbone + our `logits` head, flat (no nested model)."""
  backbone = application_backbone(app_name, input_shape, **app_kwargs)
  outputs = logits_head(backbone.output, num_classes, dropout_rate, conv=conv_head)
  return keras.Model(backbone.input, outputs, name=spec_name)


# ---------------------------------------------------------------------------
# Weight files.


def _read_legacy(group):
  """[(layer name, [arrays])] for layers with weights, in file order (tf_keras save_weights)."""
  entries = []
  for raw in group.attrs["layer_names"]:
    name = raw.decode("utf8") if isinstance(raw, bytes) else str(raw)
    layer_group = group[name]
    weight_names = [w.decode("utf8") if isinstance(w, bytes) else str(w)
                    for w in layer_group.attrs.get("weight_names", [])]
    if weight_names:
      entries.append((name, [np.asarray(layer_group[w]) for w in weight_names]))
  return entries


def _keras3_key(layer, used):
  """The group name Keras 3's saving_lib gives `layer`: snake-case class name + per-class counter."""
  return _next_key(keras_naming.to_snake_case(layer.__class__.__name__), used)


def _next_key(class_key, used):
  if class_key in used:
    used[class_key] += 1
    return f"{class_key}_{used[class_key]}"
  used[class_key] = 0
  return class_key


def _keras3_arrays(layers_group, key):
  if key not in layers_group or "vars" not in layers_group[key]:
    return None
  variables = layers_group[key]["vars"]
  arrays = [np.asarray(variables[k]) for k in sorted(variables, key=int)]
  return (variables.attrs.get("name", key), arrays) if arrays else None


def _split_file(f, model, spec, backbone_layers):
  """Returns (file entries aligned with `backbone_layers` order, {our top layer: (file name, arrays)})."""
  top_by_legacy = {legacy: ours for _, legacy, ours in spec.weight_top}
  if "layer_names" in f.attrs or ("model_weights" in f and "layer_names" in f["model_weights"].attrs):
    group = f["model_weights"] if "layer_names" not in f.attrs else f
    backbone, top = [], {}
    for name, arrays in _read_legacy(group):
      if name in top_by_legacy:
        top[top_by_legacy[name]] = (name, arrays)
      else:
        backbone.append((name, arrays))
    return backbone, top
  if "layers" in f:
    layers_group = f["layers"]
    used = {}
    backbone = []
    wanted = {id(layer) for layer in backbone_layers}
    for layer in model.layers:  # Keras 3 numbers groups per class in `model.layers` order.
      if id(layer) in wanted:
        key = _keras3_key(layer, used)
        entry = _keras3_arrays(layers_group, key)
        # A layer the file lacks shows up as a mismatch below.
        backbone.append(entry if entry else (f"layers/{key} (absent)", []))
    top = {}
    for class_key, _, ours in spec.weight_top:
      key = _next_key(class_key, used)
      entry = _keras3_arrays(layers_group, key)
      if entry:
        top[ours] = entry
    # Files saved from keras.applications hold only layers of the net itself; more entries
    # than ours means another net.
    extra = _count_weighted_groups(layers_group) - len([e for e in backbone if e[1]]) - len(top)
    if extra > 0:
      backbone.append((f"{extra} more layer(s) in the file", []))
    return backbone, top
  raise ValueError(f"{f.filename} is neither a legacy Keras HDF5 weight file (no 'layer_names' "
                   "attribute) nor a Keras 3 .weights.h5 file (no 'layers' group).")


def _count_weighted_groups(layers_group):
  return sum(1 for key in layers_group
             if "vars" in layers_group[key] and len(layers_group[key]["vars"]) > 0)


def _shapes(arrays):
  return [tuple(a.shape) for a in arrays]


def load_weights(model, spec, path):
  """Loads a keras.applications weight file (legacy HDF5 or Keras 3 .weights.h5) into `model`.

  Backbone layers are matched in order and must all fit. The file's top
  (`predictions`, MobileNet's `conv_preds`, VGG's `fc1`/`fc2`) goes onto our
  `logits` (and VGG's `fc6`/`fc7`, reshaped to convolutions); a file without
  top, or a top for another number of classes, leaves the head freshly
  initialized (logged), which is what fine-tuning from ImageNet wants.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Weight file {path!r} for net {spec.name!r} does not exist.")
  top_ours = {ours for _, _, ours in spec.weight_top}
  backbone_layers = [l for l in model.layers
                     if l.weights and not is_head_layer(l) and l.name not in top_ours]
  with h5py.File(path, "r") as f:
    file_backbone, file_top = _split_file(f, model, spec, backbone_layers)

  assignments = []
  for i, layer in enumerate(backbone_layers):
    ours = [tuple(w.shape) for w in layer.weights]
    if i >= len(file_backbone):
      raise ValueError(f"Weight file {path} does not fit net {spec.name!r}: it ends after "
                       f"{len(file_backbone)} layers with weights, our layer {layer.name!r} "
                       f"(shapes {ours}) has none. Is the file for another net or depth multiplier?")
    file_name, arrays = file_backbone[i]
    if _shapes(arrays) != ours:
      raise ValueError(f"Weight file {path} does not fit net {spec.name!r}: first mismatching layer "
                       f"is our {layer.name!r} with shapes {ours} vs the file's {file_name!r} with "
                       f"shapes {_shapes(arrays)}. Is the file for another net or depth multiplier?")
    assignments.append((layer, arrays))
  if len(file_backbone) > len(backbone_layers):
    file_name, arrays = file_backbone[len(backbone_layers)]
    raise ValueError(f"Weight file {path} does not fit net {spec.name!r}: the file has more layers; "
                     f"first extra is {file_name!r} with shapes {_shapes(arrays)}, ours has none.")

  names = {l.name for l in model.layers}
  for _, _, ours in spec.weight_top:
    if ours not in file_top:
      continue
    file_name, arrays = file_top[ours]
    if ours not in names:  # e.g. num_classes=0: no head to load into.
      logging.info("Net %s: skipping the file's top layer %r (model has no %r layer).",
                   spec.name, file_name, ours)
      continue
    layer = model.get_layer(ours)
    want = [tuple(w.shape) for w in layer.weights]
    fits = (len(arrays) == len(want) and
            all(a.size == int(np.prod(s)) and a.shape[-1] == s[-1] for a, s in zip(arrays, want)))
    if not fits:
      if ours == "logits":
        logging.warning("Net %s: the file's top %r has shapes %s but our logits need %s "
                        "(another number of classes); the head stays freshly initialized.",
                        spec.name, file_name, _shapes(arrays), want)
        continue
      raise ValueError(f"Weight file {path} does not fit net {spec.name!r}: first mismatching layer "
                       f"is our {ours!r} with shapes {want} vs the file's {file_name!r} with "
                       f"shapes {_shapes(arrays)}.")
    assignments.append((layer, [a.reshape(s) for a, s in zip(arrays, want)]))
  if "logits" in names and "logits" not in {l.name for l, _ in assignments}:
    logging.info("Net %s: %s has no usable top; the logits head is freshly initialized.",
                 spec.name, path)

  for layer, arrays in assignments:
    layer.set_weights(arrays)
