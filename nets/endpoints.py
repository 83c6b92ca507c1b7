"""TF-Slim's `end_points`: named intermediate activations of any registered net.

    model = nets.get_model("resnet50", 102)
    feats = nets.endpoints_model(model, image_size=224)(images)
    # {"block_112x112": ..., "block_56x56": ..., ..., "block_7x7": ..., "pooled": ..., "logits": ...}

TF-Slim nets returned `(logits, end_points)`. Here the Keras model stays the one
source of truth and `endpoints_model` wraps it: by default one endpoint per
spatial resolution (the last layer at each feature-map size, what a feature
pyramid or a detection head wants), the pooled features and the logits; or the
layers you name.
"""
import keras
import numpy as np


def _spatial_sizes(model, layers, image_size):
  """Feature-map height of each 4-D layer output for an image_size input (one probe forward pass)."""
  probe = keras.Model(model.inputs, [l.output for l in layers])
  outs = probe(np.zeros([1, image_size, image_size, 3], np.float32), training=False)
  return [int(o.shape[1]) for o in outs]


def endpoints_model(model, layer_names=None, *, image_size=224):
  """A keras.Model from the net's input to a dict of named activations.

  layer_names: layers of `model` to expose (an unknown name gets an error listing
  some valid ones). Default: `block_HxW`, the last layer at each feature-map size
  for an `image_size` input; `pooled`, the global pooling before the head; and
  `logits`, the model's output.
  """
  known = [l.name for l in model.layers]
  outputs = {}
  if layer_names:
    for name in layer_names:
      if name not in known:
        raise ValueError(f"{model.name} has no layer {name!r}; its last layers: {', '.join(known[-12:])}.")
      outputs[name] = model.get_layer(name).output
    return keras.Model(model.inputs, outputs, name=f"{model.name}_endpoints")
  spatial = [l for l in model.layers  # padding layers only exist to feed a VALID conv: not endpoints
             if not isinstance(l, (keras.layers.InputLayer, keras.layers.ZeroPadding2D))
             and len(l.output.shape) == 4 and not l.name.startswith(("logits", "aux_logits"))]
  last_at_size = {}
  for layer, size in zip(spatial, _spatial_sizes(model, spatial, image_size)):
    last_at_size[size] = layer  # graph order: later layers at the same size win
  for size in sorted(last_at_size, reverse=True):
    outputs[f"block_{size}x{size}"] = last_at_size[size].output
  pools = [l for l in model.layers if isinstance(l, keras.layers.GlobalAveragePooling2D)]
  if pools:
    outputs["pooled"] = pools[0].output
  if not isinstance(model.output, dict):
    outputs["logits" if "logits" in known else "features"] = model.output
  return keras.Model(model.inputs, outputs, name=f"{model.name}_endpoints")
