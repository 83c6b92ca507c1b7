"""TF-Slim's preprocessing factory, the augmentation switches, and a loop proven equal to a plain reference.

    .venv/bin/python -m pytest tests/test_preprocessing.py -q      # the learning test is slow-marked

The colour-distortion and inception tests live in test_input_pipeline.py.
"""
import io
import logging
import types

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import datasets
import nets
from slimflowers.core import checkpoints
from slimflowers.data import input_pipeline
from slimflowers.data import preprocessing
from slimflowers.train import program as train
from tests import tiny_data

SIZE = 32


def _jpeg(seed, height, width):
  rng = np.random.default_rng(seed)
  small = (rng.random((4, 5, 3)) * 255).astype(np.uint8)
  buf = io.BytesIO()
  Image.fromarray(small).resize((width, height), Image.BILINEAR).save(buf, "JPEG", quality=95)
  return buf.getvalue()


def _seed(i):
  return tf.constant([3, i], tf.int64)


# ------------------------------------------------------------------------------------------------- the recipes


def test_lenet_is_resize_and_rescale_only_the_same_in_train_and_eval():
  data = _jpeg(1, SIZE, SIZE)  # already at the output size: TF-Slim's crop_or_pad is the identity
  pixels = tf.io.decode_jpeg(data).numpy().astype(np.float32)
  expected = (pixels - 128.0) / 128.0
  np.testing.assert_allclose(preprocessing.preprocess_eval(data, SIZE, "lenet").numpy(), expected, atol=1e-6)
  for i in range(3):  # no augmentation: every seed gives the eval image
    np.testing.assert_allclose(preprocessing.preprocess_train(data, SIZE, "lenet", _seed(i)).numpy(), expected,
                               atol=1e-6)
  # A larger photo is resized to the output size first (TF-Slim assumes MNIST-sized input).
  big = _jpeg(2, 3 * SIZE, 2 * SIZE)
  resized = tf.image.resize(tf.io.decode_jpeg(big), [SIZE, SIZE]).numpy()
  np.testing.assert_allclose(preprocessing.preprocess_eval(big, SIZE, "lenet").numpy(), (resized - 128) / 128,
                             atol=1e-5)


def test_cifarnet_train_is_pad_crop_flip_brightness_contrast_then_standardized():
  data = _jpeg(3, SIZE, SIZE)
  pixels = tf.io.decode_jpeg(data).numpy().astype(np.float32)
  outs = [preprocessing.preprocess_train(data, SIZE, "cifarnet", _seed(i)).numpy() for i in range(6)]
  for out in outs:  # per-image standardization
    assert out.shape == (SIZE, SIZE, 3)
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1.0) < 1e-3
  assert len({o.tobytes() for o in outs}) == 6  # random crops/flips/colours differ per seed
  # Re-derive one example step by step with TF-Slim's ops and the same seeds.
  seeds = tf.random.experimental.stateless_split(_seed(0), num=6)
  x = tf.pad(pixels, [[4, 4], [4, 4], [0, 0]])
  x = tf.image.stateless_random_crop(x, [SIZE, SIZE, 3], seed=seeds[0])
  x = tf.image.stateless_random_flip_left_right(x, seed=seeds[1])
  x = tf.image.stateless_random_brightness(x, 63.0, seed=seeds[2])
  x = tf.image.stateless_random_contrast(x, 0.2, 1.8, seed=seeds[3])
  np.testing.assert_allclose(outs[0], tf.image.per_image_standardization(x).numpy(), atol=1e-5)
  # Eval: crop-or-pad (identity at the output size), standardized; deterministic.
  ev = preprocessing.preprocess_eval(data, SIZE, "cifarnet").numpy()
  np.testing.assert_allclose(ev, tf.image.per_image_standardization(pixels).numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["inception", "vgg", "cifarnet"])
def test_random_flip_false_never_mirrors(name):
  """Same seeds with and without the flip: where the draw flips, the two outputs are exact mirror images."""
  data = _jpeg(4, 48, 64)
  mirrored = 0
  for i in range(12):
    on = preprocessing.preprocess_train(data, SIZE, name, _seed(i), color_distortion="none").numpy()
    off = preprocessing.preprocess_train(data, SIZE, name, _seed(i), color_distortion="none",
                                         random_flip=False).numpy()
    if not np.allclose(on, off, atol=1e-5):
      np.testing.assert_allclose(on, off[:, ::-1], atol=1e-4)
      mirrored += 1
  assert 2 <= mirrored <= 10  # the flip was drawn for some seeds (else this test proves nothing)


def test_crop_area_range_bounds_the_inception_crop():
  """With --crop_area_range=0.64,1.0 no crop keeps less than 64 % of the image (the box is drawn from the seed)."""
  shape = tf.constant([200, 300, 3], tf.int32)
  for i in range(20):
    seeds = tf.random.experimental.stateless_split(_seed(i), num=6)
    _, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]), seed=seeds[0],
        min_object_covered=0.1, aspect_ratio_range=(3. / 4., 4. / 3.), area_range=(0.64, 1.0), max_attempts=100,
        use_image_if_no_bounding_boxes=True)
    assert int(size[0]) * int(size[1]) >= 0.64 * 200 * 300 * 0.97  # integer rounding of the box
  with pytest.raises(ValueError, match=r"--crop_area_range=0.5,0.2: use MIN,MAX"):
    preprocessing.check_names("inception", "fast", (0.5, 0.2))


def test_decoded_pixels_take_the_same_recipe_as_jpeg_bytes():
  data = _jpeg(5, 40, 56)
  pixels = tf.io.decode_jpeg(data, channels=3)
  for name in ("vgg", "cifarnet", "lenet"):  # these decode the whole image anyway: bit-identical
    np.testing.assert_array_equal(preprocessing.preprocess_train(data, SIZE, name, _seed(1)).numpy(),
                                  preprocessing.preprocess_train_image(pixels, SIZE, name, _seed(1)).numpy())
    np.testing.assert_array_equal(preprocessing.preprocess_eval(data, SIZE, name).numpy(),
                                  preprocessing.preprocess_eval_image(pixels, SIZE, name).numpy())


def test_describe_gives_an_app_the_numbers():
  d = preprocessing.describe("inception", 224)
  assert d["scale"] == pytest.approx(1 / 127.5) and d["offset"] == -1.0 and d["channel_order"] == "RGB"
  d = preprocessing.describe("vgg", 224)
  assert d["channel_order"] == "BGR" and d["mean"] == [103.939, 116.779, 123.68]
  assert "shorter side to 256" in d["resize_and_crop"]


# ------------------------------------------------------------------------------------------------ warnings


def test_warnings_that_teach_about_upsampling_and_tiny_crops(caplog):
  sizes = {"height": {"min": 28, "median": 32, "max": 40}, "width": {"min": 28, "median": 32, "max": 40}}
  cfg = types.SimpleNamespace(train_image_size=96, preprocessing_name="inception", crop_area_range=None)
  with caplog.at_level(logging.WARNING):
    train.warn_about_image_sizes(cfg, sizes, resize_to=None)
  text = caplog.text
  assert "more than twice the median image side (32 px)" in text
  assert "--crop_area_range=0.25,1.0" in text  # sqrt(0.05) * 32 = 7 px < 8
  caplog.clear()
  ok = types.SimpleNamespace(train_image_size=32, preprocessing_name="inception", crop_area_range=["0.25", "1.0"])
  with caplog.at_level(logging.WARNING):
    train.warn_about_image_sizes(ok, sizes, resize_to=None)
  assert caplog.text == ""
  with caplog.at_level(logging.WARNING):
    train.warn_about_image_sizes(ok, None, resize_to=24)
  assert "exceeds the 24 px" in caplog.text


def test_the_converter_records_image_sizes(tiny_dataset):
  sizes = datasets.image_sizes(tiny_dataset, "train")
  assert sizes == {"height": {"min": 40, "median": 40, "max": 40}, "width": {"min": 40, "median": 40, "max": 40}}


# ---------------------------------------------------------------------------- the loop against a plain reference


def _reference_sgd(model, batches, *, learning_rate, momentum, weight_decay):
  """A plain tf.GradientTape loop: softmax cross-entropy averaged over the batch, L2 (TF-Slim's wd * sum(w^2) / 2)
  on conv and dense kernels, SGD with momentum (v = m v - lr g; w += v), written out by hand."""
  variables = model.trainable_variables
  velocity = [tf.zeros_like(v) for v in variables]
  for images, labels in batches:
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
      loss += weight_decay * tf.add_n([tf.reduce_sum(v * v) / 2 for v in variables
                                       if v.path.split("/")[-1] == "kernel"])
    grads = tape.gradient(loss, variables)
    velocity = [momentum * vel - learning_rate * g for vel, g in zip(velocity, grads)]
    for v, vel in zip(variables, velocity):
      v.assign_add(vel)
  return {v.path: v.numpy() for v in model.weights}


@pytest.mark.parametrize("replicas", [1, 2])
def test_trainer_equals_a_plain_gradient_tape_loop(tiny_dataset, tmp_path, replicas):
  steps, batch = 3, 8
  split = datasets.get_split("folder", "train", tiny_dataset)
  # The same starting weights for both: a checkpoint the trainer fine-tunes from (every variable restored).
  init = nets.get_model("cifarnet", split.num_classes, dropout_rate=0.0)
  config = checkpoints.model_config("cifarnet", split.num_classes, {"dropout_rate": 0.0}, SIZE, "lenet")
  start = checkpoints.make_checkpoint(global_step=tf.Variable(0, dtype=tf.int64), model=init,
                                      model_config=config).write(str(tmp_path / "init" / "ckpt-0"))
  initial = [w.numpy() for w in init.weights]
  tiny_data.train(tmp_path / "run", tiny_dataset, preprocessing_name="lenet", dropout_rate=0.0, optimizer="momentum",
                  momentum=0.9, learning_rate=0.05, learning_rate_decay_type="fixed", weight_decay=0.004,
                  batch_size=batch, max_number_of_steps=steps, num_cpu_replicas=replicas, checkpoint_path=start)
  ours = tiny_data.checkpoint_weights(str(tmp_path / "run" / f"ckpt-{steps}"), num_classes=split.num_classes)
  # The very same batches, from the input pipeline (lenet: no augmentation; seed 0 as the trainer's).
  batches = list(input_pipeline.train_dataset(split, batch_size=batch, image_size=SIZE, preprocessing_name="lenet",
                                              seed=0).take(steps))
  reference_model = nets.get_model("cifarnet", split.num_classes, dropout_rate=0.0)
  reference_model.set_weights(initial)
  reference = _reference_sgd(reference_model, batches, learning_rate=0.05, momentum=0.9, weight_decay=0.004)
  moved = 0
  for (path, value), start_value in zip(reference.items(), initial):
    np.testing.assert_allclose(ours[path], value, rtol=1e-4, atol=1e-6, err_msg=path)
    moved += not np.allclose(value, start_value)
  assert moved == len(reference)  # every variable changed: the comparison is not between untouched weights


# ----------------------------------------------------------------------------------------- learning: the flip


@pytest.fixture(scope="module")
def arrows(tmp_path_factory):
  root = tmp_path_factory.mktemp("arrows")
  source = tiny_data.write_arrows(str(root / "photos"), per_class=150)
  out = str(root / "converted")
  datasets.convert("folder", out, source=source, validation_size=0.25, num_workers=1)
  return out


def _validation_accuracy(train_dir, dataset_dir):
  from slimflowers.eval import program as evaluate  # pylint: disable=g-import-not-at-top
  (result,) = evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(train_dir), dataset_name="folder",
                           dataset_dir=dataset_dir, batch_size=50)
  return result["accuracy"]


@pytest.mark.slow
def test_mirror_classes_learn_only_without_the_flip(arrows, tmp_path):
  """Left/right arrows are each other's mirror image: with --random_flip=false cifarnet learns them (>= 90 %
  in 500 steps); with the flip it cannot tell them apart, so it stays near the 75 % that up/down allow."""
  common = dict(model_name="cifarnet", train_image_size=SIZE, batch_size=32, max_number_of_steps=500,
                optimizer="adam", learning_rate=0.001, learning_rate_decay_type="fixed", log_every_n_steps=100)
  tiny_data.train(tmp_path / "no_flip", arrows, random_flip=False, **common)
  tiny_data.train(tmp_path / "flip", arrows, **common)
  no_flip, flip = _validation_accuracy(tmp_path / "no_flip", arrows), _validation_accuracy(tmp_path / "flip", arrows)
  assert no_flip >= 0.9, (no_flip, flip)
  assert flip <= 0.82, (no_flip, flip)
