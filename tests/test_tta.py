"""Test-time augmentation (slimflowers/eval/tta.py) in evaluation, prediction and the export."""
import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import datasets
from slimflowers.core import errors
from slimflowers.eval import program as evaluate
from slimflowers.deploy import export
from slimflowers.deploy import serving
from slimflowers.data import input_pipeline
from slimflowers.deploy import predict
from slimflowers.core import run_dir
from slimflowers.eval import tta
from tests import tiny_data


def _net():
  """A small net that is not mirror-symmetric (a dense layer over every pixel)."""
  keras.utils.set_random_seed(1)
  inputs = keras.Input([16, 16, 3])
  return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))


def test_views_are_the_image_its_mirror_and_ten_crops():
  images = tf.random.stateless_uniform([2, 16, 16, 3], seed=[1, 2])
  assert len(tta.views(images, "none")) == 1
  plain, mirror = tta.views(images, "flip")
  np.testing.assert_array_equal(mirror.numpy(), images.numpy()[:, :, ::-1])
  crops = tta.views(images, "crops")
  assert len(crops) == 10 and all(c.shape == images.shape for c in crops)
  # 87.5 % of 16 px = 14 px: the top-left crop is rows/columns 0..13 resized to 16.
  expected = tf.image.resize(images[:, :14, :14], [16, 16]).numpy()
  np.testing.assert_allclose(crops[1].numpy(), expected, atol=1e-6)
  np.testing.assert_allclose(crops[6].numpy(), expected[:, :, ::-1], atol=1e-6)
  with pytest.raises(ValueError, match="not one of none, flip, crops"):
    tta.views(images, "rotate")


@pytest.mark.parametrize("mode", ["flip", "crops"])
def test_logits_are_the_mean_over_views_of_one_batched_call(mode):
  model = _net()
  images = tf.random.stateless_uniform([3, 16, 16, 3], seed=[3, 4])
  expected = np.mean([model(v).numpy() for v in tta.views(images, mode)], axis=0)
  got = tta.logits(model, images, mode).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  assert not np.allclose(got, model(images).numpy(), atol=1e-3)  # the views change the answer for this net


@pytest.fixture(scope="module")
def trained(tiny_dataset_with_test, tmp_path_factory):
  train_dir = tmp_path_factory.mktemp("tta_run")
  tiny_data.train(train_dir, tiny_dataset_with_test, max_number_of_steps=4, dropout_rate=0.0)
  return train_dir, tiny_dataset_with_test


def test_evaluation_with_flip_is_exact_recorded_and_kept_apart(trained):
  train_dir, data = trained
  results = evaluate.run(tf.distribute.get_strategy(), checkpoint_path=str(train_dir), dataset_name="folder",
                         dataset_dir=data, batch_size=4, tta="flip")
  (result,) = results
  split = datasets.get_split("folder", "validation", data)
  assert result["num_examples"] == split.num_samples  # 9 examples, batches of 4: every one counted once
  (row,) = run_dir.read_results(str(train_dir / "eval_validation_tta_flip"))
  assert (row["tta"], row["tta_views"]) == ("flip", 2)
  assert not os.path.exists(train_dir / "eval_validation")  # plain results are never mixed with TTA ones
  # The accuracy is the one of the averaged logits, computed here by hand.
  import nets  # pylint: disable=g-import-not-at-top
  model = nets.get_model("cifarnet", split.num_classes)
  tf.train.Checkpoint(model=model).read(str(train_dir / "ckpt-4")).expect_partial()
  correct = 0
  for batch in input_pipeline.eval_dataset(split, batch_size=9, image_size=32, preprocessing_name="cifarnet"):
    keep = batch["mask"].numpy() > 0
    both = (model(batch["image"]).numpy() + model(tf.image.flip_left_right(batch["image"])).numpy()) / 2
    correct += int(np.sum((both.argmax(1) == batch["label"].numpy())[keep]))
  assert result["accuracy"] == pytest.approx(correct / split.num_samples)


def test_predict_with_tta_on_a_checkpoint_and_refused_on_an_export(trained, tmp_path):
  train_dir, data = trained
  files = sorted(glob.glob(os.path.join(os.path.dirname(data), "photos", "class_0", "*.jpg")))[:3]
  flipped = predict.run(str(train_dir), files, top_k=3, tta="flip")
  assert [len(p.top_k) for p in flipped] == [3, 3, 3]
  import nets  # pylint: disable=g-import-not-at-top
  model = nets.get_model("cifarnet", 3)
  tf.train.Checkpoint(model=model).read(str(train_dir / "ckpt-4")).expect_partial()
  images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[7, 8], minval=-1, maxval=1)
  for mode in ("flip", "crops"):
    predictor = predict.load_predictor(str(train_dir), tta=mode)
    assert f"tta={mode}: {tta.VIEWS[mode]} views" in predictor.what
    expected = tf.nn.softmax(np.mean([model(v).numpy() for v in tta.views(images, mode)], axis=0)).numpy()
    np.testing.assert_allclose(predictor.probabilities(None, images), expected, rtol=1e-4, atol=1e-6)
  fake_export = tmp_path / "exp"
  (fake_export / serving.SAVED_MODEL_SUBDIR).mkdir(parents=True)
  (fake_export / serving.SAVED_MODEL_SUBDIR / "saved_model.pb").write_bytes(b"")
  with pytest.raises(errors.BadValue, match="--tta=flip applies to checkpoints only"):
    predict.run(str(fake_export), files, tta="flip")


def test_export_bakes_flip_into_the_saved_model(trained, tmp_path):
  train_dir, data = trained
  out = tmp_path / "export"
  export.export_run(str(train_dir), str(out), dataset_dir=data, formats=("saved_model",), tta="flip",
                    verify_split="validation")
  assert json.loads((out / run_dir.EXPORT_JSON).read_text())["tta"] == "flip"
  import nets  # pylint: disable=g-import-not-at-top
  model = nets.get_model("cifarnet", 3)
  tf.train.Checkpoint(model=model).read(str(train_dir / "ckpt-4")).expect_partial()
  images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[5, 6], minval=-1, maxval=1)
  loaded = tf.saved_model.load(str(out / serving.SAVED_MODEL_SUBDIR))
  served = loaded.signatures["serving_preprocessed"](preprocessed_images=images)["logits"].numpy()
  expected = (model(images).numpy() + model(tf.image.flip_left_right(images)).numpy()) / 2
  np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
  with pytest.raises(errors.BadValue, match="--tta=crops: the export bakes in none or flip"):
    export.export_run(str(train_dir), str(tmp_path / "x"), formats=("saved_model",), tta="crops")
