"""Grad-CAM (slimflowers/deploy/gradcam.py) and predict_image_classifier.py --explain.

The reference heatmaps are computed here, one image at a time, from the formula (Selvaraju et al. 2017);
the geometry back onto the photo is checked against the evaluator's own preprocessing on coordinate ramps.
Every registered net's feature layer is checked in tests/test_nets.py.
"""
import io
import json
import os

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import datasets
import nets
from slimflowers.core import errors
from slimflowers.data import preprocessing
from slimflowers.deploy import gradcam
from slimflowers.deploy import predict
from slimflowers.deploy import serving
from slimflowers.eval import pointing_game
from tests import tiny_data



def _reference_cam(model, layer, image, cls):
  """Grad-CAM of one image, straight from the paper's formula."""
  sub = keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
  with tf.GradientTape() as tape:
    features, logits = sub(image[None], training=False)
    score = logits[0, cls]
  grads = tape.gradient(score, features)[0].numpy()
  weights = grads.mean(axis=(0, 1))
  cam = np.maximum((features[0].numpy() * weights).sum(-1), 0)
  return cam / cam.max() if cam.max() > 0 else cam


def test_batched_heatmaps_equal_the_formula_per_image_and_trace_once():
  model = nets.get_model("cifarnet", 4)
  explainer = gradcam.for_model(model, "cifarnet")
  images = np.random.default_rng(0).normal(0, 1, (5, 32, 32, 3)).astype(np.float32)
  cams, probabilities, classes = explainer.explain(images, [-1, 2, -1, 0, 3])
  logits = model(images, training=False).numpy()
  assert list(classes) == [int(np.argmax(logits[0])), 2, int(np.argmax(logits[2])), 0, 3]
  np.testing.assert_allclose(probabilities, tf.nn.softmax(logits).numpy(), atol=1e-6)
  for image, cam, cls in zip(images, cams, classes):
    np.testing.assert_allclose(cam, _reference_cam(model, "conv2", image, cls), atol=1e-5)
  explainer.explain(images[:3])  # other batch sizes and image sizes reuse the one graph
  explainer.explain(np.zeros([1, 48, 48, 3], np.float32))
  assert explainer.traces == 1


@pytest.mark.parametrize("name", ["inception", "vgg", "cifarnet"])
def test_view_window_is_what_the_preprocessing_shows(name):
  """Photo pixels hold their own coordinates (R = column, G = row); the net's input must hold the coordinates
  the window says, at every interior pixel (bilinear resizing keeps a linear ramp exact)."""
  height, width, size = 90, 140, 64
  ramp = np.zeros([height, width, 3], np.uint8)
  ramp[..., 0] = np.arange(width)[None, :]
  ramp[..., 1] = np.arange(height)[:, None]
  recipe = "lenet" if name == "cifarnet" else name  # same geometry; cifarnet's standardization cannot be undone
  image = preprocessing.preprocess_eval_image(tf.constant(ramp), size, recipe)
  image = image.numpy().astype(np.float64)
  means = np.array(preprocessing.RECIPES["vgg"].means_bgr)
  seen = {"inception": lambda: (image + 1) * 127.5, "lenet": lambda: image * 128 + 128,  # floats (denormalize: uint8)
          "vgg": lambda: (image + means)[..., ::-1]}[recipe]()
  top, left, win_h, win_w = gradcam.view_window(height, width, size, name)
  centres = np.arange(size) + 0.5
  expect_col = left + centres * win_w / size - 0.5
  expect_row = top + centres * win_h / size - 0.5
  inner = slice(2, size - 2)
  np.testing.assert_allclose(seen[inner, inner, 0], np.broadcast_to(expect_col[None, inner], (size - 4, size - 4)),
                             atol=0.6)
  np.testing.assert_allclose(seen[inner, inner, 1], np.broadcast_to(expect_row[inner, None], (size - 4, size - 4)),
                             atol=0.6)


def _red_detector(red=0):
  """A net whose class 0 is 'red here' (channel `red`: 2 after vgg's BGR): its heatmap must sit on the red blob."""
  inputs = keras.Input((None, None, 3))
  features = keras.layers.Conv2D(1, 3, strides=2, padding="same", activation="relu", name="feat",
                                 kernel_initializer="zeros", bias_initializer="zeros")(inputs)
  pooled = keras.layers.GlobalAveragePooling2D()(features)
  logits = keras.layers.Dense(2, name="logits")(pooled)
  model = keras.Model(inputs, logits)
  kernel = np.zeros([3, 3, 3, 1], np.float32)
  kernel[1, 1, :, 0] = -0.5
  kernel[1, 1, red, 0] = 1.0
  model.get_layer("feat").set_weights([kernel, np.zeros([1], np.float32)])
  model.get_layer("logits").set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros([2], np.float32)])
  return model


@pytest.mark.parametrize("name", ["inception", "vgg", "cifarnet"])
def test_heatmap_lands_on_the_object_in_the_photo(name):
  height, width, box = 80, 120, (20, 72, 30, 84)  # off-centre, inside every recipe's view
  photo = np.full([height, width, 3], 128, np.uint8)
  photo[box[0]:box[2], box[1]:box[3]] = (250, 20, 20)
  image = serving.preprocess_image_bytes(tf.io.encode_png(photo), 64, name)
  cams, _, classes = gradcam.GradCam(_red_detector(2 if name == "vgg" else 0), "feat").explain(image[None], [0])
  heatmap = gradcam.to_photo(cams[0], height, width, 64, name)
  assert heatmap.shape == (height, width) and classes[0] == 0
  assert pointing_game.hit(heatmap, box, tolerance=2), np.unravel_index(np.argmax(heatmap), heatmap.shape)
  assert heatmap[:, :40].max() < 0.05 and heatmap[60:].max() < 0.05  # nothing far from the blob


def test_pointing_game_scoring():
  heatmap = np.zeros([20, 20])
  heatmap[5, 15] = 1.0
  assert pointing_game.hit(heatmap, [4, 14, 8, 18], 0)
  assert not pointing_game.hit(heatmap, [7, 14, 10, 18], 1) and pointing_game.hit(heatmap, [7, 14, 10, 18], 2)
  assert not pointing_game.hit(np.zeros([20, 20]), [0, 0, 20, 20], 0)  # a blank heatmap points nowhere
  score, n = pointing_game.score([heatmap, heatmap, heatmap], [[4, 14, 8, 18], [0, 0, 2, 2], [0, 0, 2, 2]],
                                 [True, True, False], 0)
  assert (score, n) == (0.5, 2)
  assert pointing_game.random_baseline([[0, 0, 10, 10]], 20, 0) == 0.25


def test_localisation_set_puts_the_object_in_its_box(tmp_path):
  boxes = pointing_game.write_localisation_set(str(tmp_path), per_class=2, size=48, clutter=0, noise=0)
  assert len(boxes) == 2 * len(pointing_game.CLASSES)
  with open(tmp_path / pointing_game.BOXES_FILE) as f:
    assert json.load(f) == {k: list(v) for k, v in boxes.items()}
  for relative, (top, left, bottom, right) in boxes.items():
    image = np.asarray(Image.open(tmp_path / relative), np.float32)
    background = np.ones(image.shape[:2], bool)
    background[top:bottom, left:right] = False
    # Without clutter and noise, the only edges are the object's: outside its box the image is a smooth gradient.
    rough = np.abs(np.diff(image, axis=1)).max(-1) > 8
    assert rough[background[:, :-1] & background[:, 1:]].sum() == 0, relative
    rough_y = np.abs(np.diff(image, axis=0)).max(-1) > 8
    assert rough[top:bottom, left:right - 1].any() or rough_y[top:bottom - 1, left:right].any(), relative


# ----------------------------------------------------------------------------------------------------------------------
# predict_image_classifier.py --explain


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("run")
  photos = tiny_data.write_folder(str(tmp / "photos"), num_classes=3, per_class=6)
  data = str(tmp / "converted")
  datasets.convert("folder", data, source=photos, validation_size=0.25, num_workers=1)
  train_dir = str(tmp / "train")
  tiny_data.train(train_dir, data, max_number_of_steps=6)
  return {"photos": photos, "train_dir": train_dir}


@pytest.fixture(scope="module")
def photos(run, tmp_path_factory):
  root = tmp_path_factory.mktemp("explain") / "photos"
  (root / "sub").mkdir(parents=True)
  source = os.path.join(run["photos"], "class_1", "img_001.jpg")
  big = Image.open(source).convert("RGB").resize((70, 50))
  (root / "a.jpg").write_bytes(open(source, "rb").read())
  big.save(root / "sub" / "b.png")
  (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  return str(root)


def _model(run):
  model = nets.get_model("cifarnet", 3)
  model(tf.zeros([1, 32, 32, 3]))
  tf.train.Checkpoint(model=model).read(tf.train.latest_checkpoint(run["train_dir"])).expect_partial()
  return model


def test_explain_writes_overlays_and_heatmaps_at_the_photos_size(run, photos, tmp_path):
  out = str(tmp_path / "explained")
  os.makedirs(out)
  with open(os.path.join(out, "notes.txt"), "w") as f:
    f.write("mine\n")
  predictions = predict.run(run["train_dir"], [photos], explain=out, explain_class="class_2")
  assert [os.path.basename(p.path) for p in predictions] == ["a.jpg", "broken.jpg", "b.png"]
  assert predictions[1].error and not predictions[0].error and not predictions[2].error
  written = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
  assert written == ["a.npy", "a.png", gradcam.MANIFEST, "notes.txt", "sub/b.npy", "sub/b.png"]
  assert open(os.path.join(out, "notes.txt")).read() == "mine\n"
  overlay = np.asarray(Image.open(os.path.join(out, "sub", "b.png")))
  heatmap = np.load(os.path.join(out, "sub", "b.npy"))
  assert overlay.shape == (50, 70, 3) and heatmap.shape == (50, 70) and heatmap.dtype == np.float32
  # The same heatmap from the pieces: the evaluator's preprocessing, the formula, the geometry.
  pixels = np.asarray(Image.open(os.path.join(photos, "sub", "b.png")).convert("RGB"))
  image = preprocessing.preprocess_eval_image(tf.constant(pixels), 32, "cifarnet")
  cam = _reference_cam(_model(run), "conv2", image.numpy(), 2)
  np.testing.assert_allclose(heatmap, gradcam.to_photo(cam, 50, 70, 32, "cifarnet"), atol=1e-4)
  np.testing.assert_array_equal(overlay, gradcam.overlay(pixels, heatmap))
  assert np.asarray(Image.open(os.path.join(out, "a.png"))).shape == (40, 40, 3)


def test_explain_never_replaces_a_users_file_but_replaces_its_own(run, photos, tmp_path):
  out = str(tmp_path / "explained")
  os.makedirs(out)
  (tmp_path / "explained" / "a.png").write_bytes(b"the user's picture")
  predict.run(run["train_dir"], [photos], explain=out)
  assert (tmp_path / "explained" / "a.png").read_bytes() == b"the user's picture"
  assert not os.path.exists(os.path.join(out, "a.npy"))  # both of a photo's files, or neither
  first = (tmp_path / "explained" / "sub" / "b.npy").read_bytes()
  predict.run(run["train_dir"], [photos], explain=out)  # its own files are replaced
  assert (tmp_path / "explained" / "sub" / "b.npy").read_bytes() == first
  (tmp_path / "explained" / "sub" / "b.npy").write_bytes(b"edited by hand")
  predict.run(run["train_dir"], [photos], explain=out)
  assert (tmp_path / "explained" / "sub" / "b.npy").read_bytes() == b"edited by hand"


def test_explain_bad_inputs_are_one_line_errors(run, photos, tmp_path):
  with pytest.raises(errors.BadValue, match="names no class of this model; use one of: class_0, class_1, class_2"):
    predict.run(run["train_dir"], [photos], explain=str(tmp_path / "x"), explain_class="tulips")
  with pytest.raises(errors.BadValue, match="is inside .*photos"):
    predict.run(run["train_dir"], [photos], explain=os.path.join(photos, "explained"))
  with pytest.raises(errors.BadValue, match="pass --explain=OUT_DIR too"):
    predict.run(run["train_dir"], [photos], explain_class="class_1")
  fake_export = tmp_path / "export"
  (fake_export / serving.SAVED_MODEL_SUBDIR).mkdir(parents=True)
  (fake_export / serving.SAVED_MODEL_SUBDIR / "saved_model.pb").write_bytes(b"")
  for model in (str(fake_export), str(fake_export / "model_float32.tflite")):
    with pytest.raises(errors.BadValue, match="--explain needs the run directory or checkpoint"):
      predict.run(model, [photos], explain=str(tmp_path / "x"))
  assert not os.path.exists(tmp_path / "x")
  with pytest.raises(gradcam.NoFeatureLayer, match="no layer 'nope'"):
    gradcam.GradCam(_model(run), "nope")
