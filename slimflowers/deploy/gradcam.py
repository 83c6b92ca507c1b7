r"""Grad-CAM (Selvaraju et al. 2017, SOURCES.md §9): where in a photo the net found the class it names.

    python predict_image_classifier.py --model=runs/cifarnet --explain=explained/ photos/
    # explained/roses/123.png  the photo at its own size with the heatmap over it (colormap jet, alpha 0.4)
    # explained/roses/123.npy  float32 [photo height, photo width], 0..1 (0 outside what the net saw)

For a batch of images and one class per image (the predicted class, or --explain_class), the gradient
of that class's logit (before the softmax) with respect to the net's last spatial feature map A
(`feature_layer` in the nets registry) is averaged over height and width into one weight per channel;
the heatmap is ReLU(sum_c w_c A_c), divided by its maximum. One traced function serves every batch
(`GradCam.traces` counts the tracings), so explaining 1,000 photos builds one graph, not 1,000.

The heatmap is computed on the net's input (the evaluator's preprocessing of the photo) and mapped
back onto the photo through the same geometry: the inception recipe's central crop, the vgg recipe's
resize and central crop, the cifarnet/lenet resize (`view_window`). Bilinear throughout, so a hot
feature cell lands on the photo pixels it was computed from.

Output ownership (a user's files are never replaced): OUT_DIR/explain_manifest.json lists every file
this program wrote with its sha256; an existing file at an output name is replaced only when the
manifest says it is ours and its content is unchanged, otherwise that photo gets an error and the run
goes on. Names are recorded before their files are written, so a run killed midway leaves nothing the
next run cannot replace.
"""
import hashlib
import io
import os

from absl import logging
import numpy as np
import tensorflow as tf

import nets
from slimflowers.core import errors
from slimflowers.core import fileio
from slimflowers.data import preprocessing
from slimflowers.deploy import serving
from slimflowers.eval import model_source
from slimflowers.eval import tta

MANIFEST = "explain_manifest.json"
OVERLAY_ALPHA = 0.4  # the keras.io Grad-CAM example's heatmap weight over the photo (SOURCES.md §9)
OVERLAY_EXTENSION, HEATMAP_EXTENSION = ".png", ".npy"


class NoFeatureLayer(errors.UserError, ValueError):
  """The net has no registered last spatial feature layer."""


def feature_layer_name(model_name):
  """The registered last spatial feature layer of `model_name`, or a one-line error."""
  spec = nets.get_spec(model_name)
  if not spec.feature_layer:
    raise NoFeatureLayer(f"Net {spec.name!r} declares no feature layer for Grad-CAM: add feature_layer=... to its "
                         f"@register in nets/ (the layer whose output is its last spatial feature map).")
  return spec.feature_layer


class GradCam:
  """Batched Grad-CAM for a Keras classifier built by `nets` (one traced function for every batch).

  explain(images [B, S, S, 3] preprocessed, classes [B] int (-1: the predicted class))
    -> (heatmaps [B, h, w] in 0..1 at the feature map's resolution, probabilities [B, K], explained classes [B]).
  """

  def __init__(self, model, layer_name):
    import keras  # pylint: disable=g-import-not-at-top
    known = [layer.name for layer in model.layers]
    if layer_name not in known:
      raise NoFeatureLayer(f"{model.name} has no layer {layer_name!r} (its registered feature layer); "
                           f"its last layers: {', '.join(known[-8:])}.")
    self._model = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.output])
    self.traces = 0
    self._explain = tf.function(self._explain_fn, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None], tf.int32)])

  def _explain_fn(self, images, classes):
    self.traces += 1  # Python side effect: runs once per tracing, not per call
    with tf.GradientTape() as tape:
      features, outputs = self._model(images, training=False)
      logits = tf.cast(tta.logits_of(outputs), tf.float32)
      classes = tf.where(classes < 0, tf.argmax(logits, axis=1, output_type=tf.int32), classes)
      # Each image's score depends on its own features only (inference mode), so one gradient of the sum
      # gives every image's gradient.
      score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    grads = tf.cast(tape.gradient(score, features), tf.float32)
    features = tf.cast(features, tf.float32)
    weights = tf.reduce_mean(grads, axis=[1, 2])                                # [B, C]
    cams = tf.nn.relu(tf.einsum("bhwc,bc->bhw", features, weights))
    peak = tf.reduce_max(cams, axis=[1, 2], keepdims=True)
    cams = tf.math.divide_no_nan(cams, peak)
    return cams, tf.nn.softmax(logits), classes

  def explain(self, images, classes=None):
    images = tf.convert_to_tensor(images, tf.float32)
    if classes is None:
      classes = -tf.ones([tf.shape(images)[0]], tf.int32)
    cams, probabilities, classes = self._explain(images, tf.convert_to_tensor(classes, tf.int32))
    return cams.numpy(), probabilities.numpy(), classes.numpy()


def for_model(model, model_name):
  """GradCam on `model` at the registered feature layer of net `model_name`."""
  return GradCam(model, feature_layer_name(model_name))


# ----------------------------------------------------------------------------------------------------------------------
# From the net's input back to the photo


def view_window(height, width, image_size, preprocessing_name):
  """(top, left, window height, window width) of the photo region the evaluator's preprocessing shows the net,
  in photo pixels (floats): the net's S x S input is that window resized.

  Mirrors the eval recipes of slimflowers/data/preprocessing.py (its RECIPES): central_fraction (inception) =
  central crop of 0.875 of each side; smaller_side (vgg) = shorter side resized to 256 * S / 224, then the
  central S x S; crop_or_pad after resize_first (cifarnet/lenet) = the whole photo resized.
  """
  recipe = preprocessing.recipe(preprocessing_name)
  if recipe.eval == "central_fraction":
    fraction = np.float32(recipe.central_fraction)
    crop_h, crop_w = max(int(np.float32(height) * fraction), 1), max(int(np.float32(width) * fraction), 1)
    return float((height - crop_h) // 2), float((width - crop_w) // 2), float(crop_h), float(crop_w)
  if recipe.eval == "smaller_side":
    smallest = preprocessing._smaller_sides(recipe, image_size)[0]  # pylint: disable=protected-access
    scale = np.float32(smallest) / np.float32(min(height, width))
    new_h = max(int(np.round(np.float32(height) * scale)), smallest)
    new_w = max(int(np.round(np.float32(width) * scale)), smallest)
    sy, sx = height / new_h, width / new_w
    return (new_h - image_size) // 2 * sy, (new_w - image_size) // 2 * sx, image_size * sy, image_size * sx
  return 0.0, 0.0, float(height), float(width)


def _interpolation_matrix(size, cells, start, extent):
  """[size, cells] bilinear weights (half-pixel centres) sampling `cells` cells spread over [start, start + extent)
  at the centres of pixels 0..size-1; rows of pixels outside the span are zero."""
  centres = (np.arange(size, dtype=np.float64) + 0.5 - start) * cells / extent - 0.5
  matrix = np.zeros([size, cells], np.float64)
  inside = (centres >= -0.5) & (centres <= cells - 0.5)
  clamped = np.clip(centres, 0, cells - 1)
  low = np.floor(clamped).astype(int)
  high = np.minimum(low + 1, cells - 1)
  frac = clamped - low
  rows = np.arange(size)
  np.add.at(matrix, (rows, low), (1 - frac) * inside)
  np.add.at(matrix, (rows, high), frac * inside)
  return matrix


def to_photo(heatmap, height, width, image_size, preprocessing_name):
  """A heatmap [h, w] over the net's input -> float32 [height, width] over the photo (0 where the net saw nothing)."""
  top, left, win_h, win_w = view_window(height, width, image_size, preprocessing_name)
  rows = _interpolation_matrix(height, heatmap.shape[0], top, win_h)
  cols = _interpolation_matrix(width, heatmap.shape[1], left, win_w)
  return np.clip(rows @ np.asarray(heatmap, np.float64) @ cols.T, 0.0, 1.0).astype(np.float32)


def overlay(photo, heatmap, alpha=OVERLAY_ALPHA):
  """uint8 [H, W, 3]: the photo with the heatmap in matplotlib's jet colours over it (the keras.io example's look)."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255.0
  mixed = (1 - alpha) * np.asarray(photo, np.float32) + alpha * colours
  return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def encode_png(pixels):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format="PNG")
  return out.getvalue()


def encode_npy(array):
  out = io.BytesIO()
  np.save(out, np.asarray(array, np.float32), allow_pickle=False)
  return out.getvalue()


# ----------------------------------------------------------------------------------------------------------------------
# Output names and ownership


def relative_names(paths, files):
  """{file: its name below OUT_DIR without extension}: relative to the directory argument it was found in; a file
  given by itself keeps its relative path (its base name when the path is absolute or leaves the working directory).
  Two files with one name: a one-line error before anything is computed."""
  directories = [os.path.normpath(p) for p in paths if fileio.isdir(p)]
  names, owners = {}, {}
  for f in files:
    norm = os.path.normpath(f)
    name = None
    for d in directories:
      if norm.startswith(d.rstrip(os.sep) + os.sep):
        name = os.path.relpath(norm, d)
        break
    if name is None:
      name = norm if not os.path.isabs(norm) and not norm.startswith(os.pardir) else os.path.basename(norm)
    name = os.path.splitext(name)[0]
    if name in owners:
      raise errors.BadValue(f"--explain: {owners[name]} and {f} would both be explained as {name}"
                            f"{OVERLAY_EXTENSION}; explain them in separate runs (or separate --explain dirs).")
    owners[name], names[f] = f, name
  return names


def check_out_dir(out_dir, paths):
  """--explain must not lie inside a directory being classified (its overlays would be classified next time)."""
  if not fileio.is_local(out_dir):
    return
  out = os.path.realpath(fileio.local_path(out_dir))
  for p in paths:
    if fileio.is_local(p) and fileio.isdir(p):
      d = os.path.realpath(fileio.local_path(p))
      if out == d or out.startswith(d.rstrip(os.sep) + os.sep):
        raise errors.BadValue(f"--explain={out_dir} is inside {p}, one of the folders being classified: the overlays "
                              "would be classified as photos next time. Pick a directory outside it.")


def _sha256(data):
  return hashlib.sha256(data).hexdigest()


class OutputDir:
  """OUT_DIR with its manifest: writes only names it may replace (see the module doc)."""

  def __init__(self, out_dir):
    self.out_dir = out_dir
    path = os.path.join(out_dir, MANIFEST)
    if fileio.exists(path):
      manifest = fileio.read_json(path)
      if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise errors.BadValue(f"{path} is not an explain manifest this program wrote; pick another --explain "
                              "directory (or remove that file if it is a leftover of yours).")
      self.files = dict(manifest["files"])
    else:
      self.files = {}

  def _save(self):
    fileio.write_json_atomic(os.path.join(self.out_dir, MANIFEST), {"files": self.files})

  def refusal(self, relative):
    """None when `relative` may be written; else why not (a file that is not ours)."""
    path = os.path.join(self.out_dir, relative)
    if not fileio.exists(path):
      return None
    recorded = self.files.get(relative, "absent")
    if recorded == "absent" or (recorded is not None and
                                (fileio.isdir(path) or _sha256(fileio.read_bytes(path)) != recorded)):
      return f"{path} exists and was not written by --explain (or was changed since): not replaced"
    return None

  def write(self, contents):
    """contents: {relative name: bytes}; names first (pending), then files, then their checksums."""
    for relative in contents:
      self.files[relative] = None  # pending: replaceable by the next run even if this one is killed now
    self._save()
    for relative, data in contents.items():
      fileio.write_bytes_atomic(os.path.join(self.out_dir, relative), data)
      self.files[relative] = _sha256(data)
    self._save()


# ----------------------------------------------------------------------------------------------------------------------
# The --explain program (predict_image_classifier.py)


def resolve_class(explain_class, class_names):
  """--explain_class (a class name or id) -> class id; None -> -1 (each photo's predicted class)."""
  if explain_class is None or explain_class == "":
    return -1
  if explain_class in class_names:
    return list(class_names).index(explain_class)
  if str(explain_class).isdigit() and int(explain_class) < len(class_names):
    return int(explain_class)
  shown = ", ".join(class_names[:20]) + (", ..." if len(class_names) > 20 else "")
  raise errors.BadValue(f"--explain_class={explain_class} names no class of this model; use one of: {shown} "
                        f"(or an id 0..{len(class_names) - 1}).")


class ExplainingPredictor:
  """A checkpoint's model that classifies a batch and writes each photo's Grad-CAM overlay and heatmap.

  predict.predict calls `probabilities` per batch and then `explain_batch` with the batch's file indices:
  probabilities come from the same forward pass as the heatmaps.
  """

  def __init__(self, checkpoint_predictor, model, model_name, out_dir, names, explain_class=None):
    self.image_size = checkpoint_predictor.image_size
    self.preprocessing_name = checkpoint_predictor.preprocessing_name
    self.class_names = checkpoint_predictor.class_names
    self.what = checkpoint_predictor.what + ", Grad-CAM into " + out_dir
    self.gradcam = for_model(model, model_name)
    self.explain_class = resolve_class(explain_class, self.class_names)
    self.output = OutputDir(out_dir)
    self.names = names  # [file index] -> name below out_dir without extension
    self.errors = {}    # file index -> why its explanation was not written
    self.written = 0
    self._cams = None

  def probabilities(self, image_bytes, images):
    del image_bytes
    classes = tf.fill([tf.shape(images)[0]], self.explain_class)
    self._cams, probabilities, _ = self.gradcam.explain(images, classes)
    return probabilities

  def explain_batch(self, indices, image_bytes):
    """Writes the overlay and heatmap of each image of the batch `probabilities` last saw (the manifest twice
    per batch, not per file)."""
    batch = {}
    for index, data, cam in zip(indices, image_bytes.numpy(), self._cams):
      index = int(index)
      name = self.names[index]
      outputs = {name + OVERLAY_EXTENSION: None, name + HEATMAP_EXTENSION: None}
      refusals = [r for r in map(self.output.refusal, outputs) if r]
      if refusals:
        self.errors[index] = refusals[0]
        continue
      photo = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
      heatmap = to_photo(cam, photo.shape[0], photo.shape[1], self.image_size, self.preprocessing_name)
      outputs[name + OVERLAY_EXTENSION] = encode_png(overlay(photo, heatmap))
      outputs[name + HEATMAP_EXTENSION] = encode_npy(heatmap)
      batch.update(outputs)
      self.written += 1
    if batch:
      self.output.write(batch)


def explaining_predictor(model_path, out_dir, paths, files, *, explain_class=None, use_ema=False):
  """The predictor for --explain: a run directory or checkpoint only (an export has no gradients to take)."""
  from slimflowers.deploy import predict  # pylint: disable=g-import-not-at-top  (predict imports this module)
  model_path = model_path.rstrip("/")
  if model_path.endswith(".tflite") or fileio.exists(os.path.join(model_path, serving.SAVED_MODEL_SUBDIR,
                                                                  "saved_model.pb")):
    raise errors.BadValue(f"--explain needs the run directory or checkpoint the model was trained in (Grad-CAM takes "
                          f"gradients through the net's layers); --model={model_path} is an export. Pass "
                          "--model=RUN_DIR or a checkpoint.")
  check_out_dir(out_dir, paths)
  names = relative_names(paths, files)
  base = predict.load_predictor(model_path, use_ema=use_ema)
  source = model_source.resolve_source(model_path)
  predictor = ExplainingPredictor(base, base.model, source.model_name, out_dir, [names[f] for f in files],
                                  explain_class=explain_class)
  logging.info("Grad-CAM at layer %s of %s; overlays and heatmaps into %s", feature_layer_name(source.model_name),
               source.model_name, out_dir)
  return predictor


def report(predictor):
  """The run's last words about its explanations (refused outputs named, each on its own line)."""
  for index in sorted(predictor.errors):
    logging.warning("No explanation for file %d: %s", index, predictor.errors[index])
  logging.info("Wrote %d overlay(s) and heatmap(s) into %s%s", predictor.written, predictor.output.out_dir,
               f"; {len(predictor.errors)} not written (above)" if predictor.errors else "")
