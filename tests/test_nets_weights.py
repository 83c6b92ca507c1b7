"""Weight-file round trips: keras.applications files (legacy HDF5 and Keras 3) into nets.get_model.

    .venv/bin/python -m pytest tests/test_nets_weights.py -q            # slow test included

Legacy HDF5 files are written the way users got them, by tf_keras
(`model.save_weights("x.h5")`), in a subprocess with TF_USE_LEGACY_KERAS=1 so
the test process keeps Keras 3; this file is also that subprocess's script.
Weights are randomized at a realistic scale (kernels of unit-variance fan-in
scaling, random batch-norm statistics) because freshly initialized
keras.applications models give logits near 1e-19, which any comparison passes.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

# Nets whose round trip runs in the fast set; the slow test covers the other keras.applications nets.
FAST = ("resnet_v1_50", "mobilenet_v1")
# keras.applications constructor and test image size for each keras.applications-backed net.
APPS = {
    "resnet_v1_50": ("ResNet50", {}, 64),
    "resnet_v1_101": ("ResNet101", {}, 64),
    "inception_v3": ("InceptionV3", {}, 75),
    "inception_resnet_v2": ("InceptionResNetV2", {}, 75),
    "xception": ("Xception", {}, 71),
    "mobilenet_v1": ("MobileNet", {"alpha": 1.0}, 64),
    "mobilenet_v1_075": ("MobileNet", {"alpha": 0.75}, 64),
    "mobilenet_v1_050": ("MobileNet", {"alpha": 0.5}, 64),
    "mobilenet_v1_025": ("MobileNet", {"alpha": 0.25}, 64),
    "mobilenet_v2": ("MobileNetV2", {}, 64),
    "vgg_16": ("VGG16", {}, 224),  # its Flatten top needs exactly 224
}
REL_TOL = 1e-4


def randomize(model, seed):
  """Realistic random weights for a keras or tf_keras model (works with both APIs)."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    values = []
    current = layer.get_weights()
    for weight, value in zip(layer.weights, current):
      kind = weight.name.split("/")[-1].split(":")[0]
      shape = value.shape
      if kind in ("kernel", "depthwise_kernel", "pointwise_kernel"):
        depthwise = kind == "depthwise_kernel" or type(layer).__name__ == "DepthwiseConv2D"
        fan_in = int(np.prod(shape[:2])) if depthwise else int(np.prod(shape[:-1]))
        values.append(rng.normal(0, 1 / np.sqrt(fan_in), shape))
      elif kind == "gamma":
        values.append(rng.uniform(0.8, 1.2, shape))
      elif kind in ("beta", "bias", "moving_mean"):
        values.append(rng.normal(0, 0.1, shape))
      elif kind == "moving_variance":
        values.append(rng.uniform(0.5, 1.5, shape))
      else:
        raise ValueError(f"Unexpected weight {weight.name} in layer {layer.name}.")
    layer.set_weights([v.astype(value.dtype) for v, value in zip(values, current)])


def make_files(applications, names, out_dir, suffix, seed=0, notop=True):
  """Writes, per net, full (and no-top) weight files plus an input and the reference outputs.

  `applications` is keras.applications or tf_keras.applications; the reference
  is the full model's logits (classifier_activation=None) and the no-top model's
  average-pooled features.
  """
  for i, name in enumerate(names):
    app_name, kwargs, size = APPS[name]
    app = getattr(applications, app_name)
    images = np.random.default_rng(seed + i).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    full = app(weights=None, classifier_activation=None, input_shape=(size, size, 3), **kwargs)
    randomize(full, seed + 100 + i)
    full.save_weights(os.path.join(out_dir, f"{name}_full{suffix}"))
    np.save(os.path.join(out_dir, f"{name}_images{suffix}.npy"), images)
    np.save(os.path.join(out_dir, f"{name}_logits{suffix}.npy"), np.asarray(full(images)))
    del full
    if not notop:
      continue
    top_less = app(weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3),
                   **kwargs)
    randomize(top_less, seed + 200 + i)
    top_less.save_weights(os.path.join(out_dir, f"{name}_notop{suffix}"))
    np.save(os.path.join(out_dir, f"{name}_features{suffix}.npy"), np.asarray(top_less(images)))


def start_legacy_files(names, out_dir):
  """Starts make_files under tf_keras in a subprocess (legacy Keras must not load in this process)."""
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.Popen([sys.executable, os.path.abspath(__file__), json.dumps(list(names)), str(out_dir)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc):
  _, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err[-3000:]


def make_legacy_files(names, out_dir):
  wait_for(start_legacy_files(names, out_dir))


def _assert_close(ours, reference, what):
  ours, reference = np.asarray(ours), np.asarray(reference)
  scale = float(np.max(np.abs(reference)))
  # Realistic scale: a wrong layer order could not hide behind 1e-19 outputs.
  assert 1e-2 < scale < 1e6, f"{what}: reference magnitude {scale} is not realistic"
  error = float(np.max(np.abs(ours - reference)))
  assert error <= REL_TOL * scale, f"{what}: max error {error} vs magnitude {scale}"


def _pooled_backbone(model):
  """Average-pooled output of the keras.applications part (VGG's fc6/fc7 are ours, not in no-top files)."""
  import keras  # pylint: disable=g-import-not-at-top
  names = {l.name for l in model.layers}
  if "block5_pool" in names:
    end = model.get_layer("block5_pool").output
  else:
    end = model.get_layer("logits_pool" if "logits_pool" in names else "global_pool").input
  return keras.Model(model.input, keras.layers.GlobalAveragePooling2D()(end))


def _round_trip(name, files, suffixes, *, notop_suffixes=None, features_model=True):
  """Loads the files made for `name` (one set per suffix) and compares with the references.

  The models are built once by nets.get_model(weights=first file); the files of
  the other suffixes are loaded into the same models by nets_utils.load_weights.
  notop_suffixes: the suffixes that have no-top files (default: all).
  features_model: also build num_classes=0 and load the no-top file into it.
  """
  import keras  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  from nets import nets_utils  # pylint: disable=g-import-not-at-top
  spec = nets.get_spec(name)
  notop_suffixes = suffixes if notop_suffixes is None else notop_suffixes
  model = features = None
  for suffix in suffixes:
    images = np.load(files / f"{name}_images{suffix}.npy")
    full, notop = str(files / f"{name}_full{suffix}"), str(files / f"{name}_notop{suffix}")
    if model is None:
      model = nets.get_model(name, 1000, weights=full)
    else:
      nets_utils.load_weights(model, spec, full)
    # Full file, 1000 classes: our logits are keras.applications' logits.
    _assert_close(model(images, training=False), np.load(files / f"{name}_logits{suffix}.npy"),
                  f"{name} full{suffix}")
    if suffix not in notop_suffixes:
      continue
    reference = np.load(files / f"{name}_features{suffix}.npy")
    if features_model:
      # No-top file: the backbone is loaded, the pooled features are keras.applications'.
      if features is None:
        features = nets.get_model(name, 0, weights=notop)
      else:
        nets_utils.load_weights(features, spec, notop)
      _assert_close(_pooled_backbone(features)(images, training=False), reference,
                    f"{name} notop{suffix}")
    # No-top file into a classifier: backbone loaded, head left as it was.
    head_before = [w.numpy() for w in model.get_layer("logits").weights]
    nets_utils.load_weights(model, spec, notop)
    _assert_close(_pooled_backbone(model)(images, training=False), reference,
                  f"{name} notop{suffix} into a classifier")
    for before, after in zip(head_before, model.get_layer("logits").weights):
      np.testing.assert_array_equal(before, after.numpy())
  del model, features
  keras.backend.clear_session()


@pytest.fixture(scope="module")
def legacy_files(tmp_path_factory):
  out = tmp_path_factory.mktemp("legacy_h5")
  make_legacy_files(FAST, out)
  return out


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory):
  import keras  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp("keras3_h5")
  make_files(keras.applications, FAST, out, ".weights.h5")
  keras.backend.clear_session()
  return out


@pytest.mark.slow  # tf_keras writes the legacy files in a subprocess
@pytest.mark.parametrize("name", FAST)
def test_legacy_h5_round_trip(name, legacy_files):
  _round_trip(name, legacy_files, [".h5"])


@pytest.mark.parametrize("name", FAST)
def test_keras3_weights_h5_round_trip(name, keras3_files):
  _round_trip(name, keras3_files, [".weights.h5"])


@pytest.mark.slow
def test_mismatching_file_names_first_layer_and_shapes(legacy_files, keras3_files):
  import nets  # pylint: disable=g-import-not-at-top
  model = nets.get_model("mobilenet_v1_025", 10)
  before = [w.numpy() for w in model.weights]
  for files, suffix in ((legacy_files, ".h5"), (keras3_files, ".weights.h5")):
    # MobileNet 1.0's first conv has 32 filters; 0.25's has 8.
    with pytest.raises(ValueError, match=r"first mismatching layer is our 'conv1' with shapes "
                                         r"\[\(3, 3, 3, 8\)\] vs the file's '\w+' with shapes "
                                         r"\[\(3, 3, 3, 32\)\]"):
      from nets import nets_utils  # pylint: disable=g-import-not-at-top
      nets_utils.load_weights(model, nets.get_spec("mobilenet_v1_025"),
                              str(files / f"mobilenet_v1_full{suffix}"))
    with pytest.raises(ValueError, match=r"does not fit net 'resnet_v1_101': first mismatching layer is our "
                                         r"'conv4_block7_\w+'"):
      nets.get_model("resnet_v1_101", 10, weights=str(files / f"resnet_v1_50_notop{suffix}"))
  for old, new in zip(before, model.weights):  # a failed load assigns nothing
    np.testing.assert_array_equal(old, new.numpy())
  with pytest.raises(FileNotFoundError, match="missing.h5"):
    nets.get_model("mobilenet_v1_025", 10, weights="/nonexistent/missing.h5")


def test_full_file_for_other_class_count_loads_backbone_only(keras3_files):
  """Fine-tuning from a 1000-class file: the backbone is loaded, the 102-class head stays fresh."""
  import keras  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  path = str(keras3_files / "mobilenet_v1_full.weights.h5")
  images = np.load(keras3_files / "mobilenet_v1_images.weights.h5.npy")
  imagenet = nets.get_model("mobilenet_v1", 1000, weights=path)
  fresh = nets.get_model("mobilenet_v1", 102)
  tuned = nets.get_model("mobilenet_v1", 102, weights=path)
  assert tuple(tuned.get_layer("logits").kernel.shape) == (1, 1, 1024, 102)
  _assert_close(_pooled_backbone(tuned)(images, training=False),
                _pooled_backbone(imagenet)(images, training=False), "mobilenet_v1 backbone")
  # Not a copy of some other layer: the head is a fresh initialization (same scale as `fresh`).
  head, fresh_head = tuned.get_layer("logits").kernel.numpy(), fresh.get_layer("logits").kernel.numpy()
  assert np.std(head) == pytest.approx(np.std(fresh_head), rel=0.1)
  keras.backend.clear_session()


def test_aux_logits_model_loads_backbone(tmp_path):
  """The auxiliary head sits among the backbone layers; loading must skip it, not shift."""
  import keras  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  plain = nets.get_model("inception_v3", 0, image_size=75)
  randomize(plain, 7)
  path = str(tmp_path / "inception_v3_notop.weights.h5")
  plain.save_weights(path)
  images = np.random.default_rng(3).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
  reference = plain(images, training=False)
  model = nets.get_model("inception_v3", 5, aux_logits=True, weights=path)
  pooled = keras.Model(model.input, model.get_layer("logits_pool").output)
  _assert_close(pooled(images, training=False), reference, "inception_v3 aux backbone")
  keras.backend.clear_session()


@pytest.mark.slow
def test_every_keras_application_round_trips(tmp_path):
  """Every other keras.applications-backed net: legacy full + no-top, Keras 3 full.

  (Keras 3 no-top files and features-mode models are covered by the fast tests;
  this one keeps to one build of ours per net to stay within its time budget.)
  """
  import keras  # pylint: disable=g-import-not-at-top
  import nets  # pylint: disable=g-import-not-at-top
  backed = {n for n in nets.list_models() if nets.get_spec(n).keras_application}
  assert backed == set(APPS), "add the new keras.applications-backed net to APPS"
  slow = sorted(backed - set(FAST))
  # The tf_keras files are written by a second process while this one writes the Keras 3 files:
  # two cores, two independent halves.
  legacy = start_legacy_files(slow, tmp_path)
  for name in slow:
    make_files(keras.applications, [name], tmp_path, ".weights.h5", seed=1000, notop=False)
    keras.backend.clear_session()
  wait_for(legacy)
  for name in slow:
    _round_trip(name, tmp_path, [".h5", ".weights.h5"], notop_suffixes=[".h5"],
                features_model=False)
    for path in tmp_path.glob(f"{name}_*"):  # VGG-16 files are 0.5 GB each
      path.unlink()


if __name__ == "__main__":
  # Subprocess entry of make_legacy_files: argv = [json list of names, output directory].
  import tf_keras  # pylint: disable=g-import-not-at-top
  make_files(tf_keras.applications, json.loads(sys.argv[1]), sys.argv[2], ".h5")
