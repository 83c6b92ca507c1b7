"""Tests for nets/: registry, every registered net's shapes and parameter counts, heads, overrides.

    .venv/bin/python -m pytest tests/test_nets.py -q

Per-net tests are parametrized over `nets.list_models()` through a module-scoped
fixture, so each net is built once (pytest groups the tests by fixture param)
and a newly registered net is tested without new code.
"""
import keras
import numpy as np
import pytest

import nets

# Trainable parameters at num_classes=102. A newly registered net needs no new test code except
# its count here (test_registry_has_every_table_net says so when it is missing): the first six are
# the study's published table (SOURCES.md §1; the five keras.applications counts equal
# keras.applications(weights=None, classes=102)); the other keras.applications-backed nets were
# checked equal to keras.applications(classes=102) when written; alexnet_v2 is TF-Slim's layout,
# cifarnet ours (global pool before fc3).
STUDY_PARAMS_AT_102 = {
    "alexnet": 22_000_294,
    "inception_resnet_v2": 54_432_966,
    "inception_v3": 21_977_350,
    "mobilenet_v1": 3_311_526,
    "resnet_v1_50": 23_743_590,
    "xception": 21_015_950,
}
PARAMS_AT_102 = {
    **STUDY_PARAMS_AT_102,
    "alexnet_v2": 46_624_806,
    "cifarnet": 225_894,
    "mobilenet_v1_075": 1_894_998,
    "mobilenet_v1_050": 870_918,
    "mobilenet_v1_025": 239_286,
    "mobilenet_v2": 2_354_534,
    "resnet_v1_101": 42_761_830,
    "vgg_16": 134_678_438,
}
STUDY_ALIASES = {"alexnet": "alexnet", "inception_v3": "inception_v3",
                 "resnet50": "resnet_v1_50", "xception": "xception",
                 "mobilenet": "mobilenet_v1", "inception_resnet": "inception_resnet_v2"}
NUM_CLASSES = 102


def _images(size, batch=2, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype("float32")


@pytest.fixture(scope="module", params=nets.list_models())
def built(request):
  """(spec, model at num_classes=102 and variable image size), built once per net."""
  spec = nets.get_spec(request.param)
  model = nets.get_model(spec.name, NUM_CLASSES)
  yield spec, model
  del model
  keras.backend.clear_session()


# ---------------------------------------------------------------------------
# Registry.


def test_registry_has_every_table_net():
  missing = sorted(set(nets.list_models()) - set(PARAMS_AT_102))
  assert not missing, (f"add the trainable parameter count at 102 classes of {missing} to PARAMS_AT_102 "
                       "(the only per-net edit a new net needs)")
  assert sorted(PARAMS_AT_102) == nets.list_models()
  # The study's six networks are all registered under the study's names.
  assert sorted(nets.get_spec(alias).name for alias in STUDY_ALIASES) == sorted(STUDY_PARAMS_AT_102)


def test_study_aliases_resolve():
  for alias, name in STUDY_ALIASES.items():
    assert nets.get_spec(alias).name == name
  assert nets.get_spec("resnet_v1_50").preprocessing == "vgg"  # keras ResNet50: caffe mode
  assert nets.get_spec("vgg_16").preprocessing == "vgg"
  assert nets.get_spec("inception_v3").preprocessing == "inception"
  assert nets.get_spec("mobilenet").default_image_size == 224
  assert nets.get_spec("inception_resnet").min_image_size == 75
  # TF-Slim's preprocessing_fn_map where TF-Slim has the net; alexnet_v2 as TF-Slim users run it.
  assert nets.get_spec("cifarnet").preprocessing == "cifarnet"
  assert nets.get_spec("alexnet_v2").preprocessing == "vgg"
  assert nets.get_spec("mobilenet_v1").preprocessing == "inception"


def test_unknown_name_lists_known_names():
  with pytest.raises(ValueError, match="Unknown net 'resnet5'.*resnet_v1_50.*resnet50->resnet_v1_50"):
    nets.get_model("resnet5", 10)


def test_duplicate_registration_raises_and_keeps_registry():
  before = nets.list_models()
  with pytest.raises(ValueError, match="already registered"):
    nets.register("resnet_v1_50", default_image_size=224, min_image_size=32,
                  preprocessing="vgg")(lambda *a, **k: None)
  with pytest.raises(ValueError, match="'mobilenet' is already registered"):
    nets.register("new_net", default_image_size=224, min_image_size=32, preprocessing="vgg",
                  aliases=("mobilenet",))(lambda *a, **k: None)
  assert nets.list_models() == before
  with pytest.raises(ValueError, match="new_net"):
    nets.get_spec("new_net")


def test_unknown_or_unsupported_override_errors():
  with pytest.raises(ValueError, match=r"'resnet_v1_50'.*\['drop_rate'\].*dropout_rate"):
    nets.get_model("resnet50", 10, drop_rate=0.2)
  with pytest.raises(ValueError, match=r"'resnet_v1_50'.*aux_logits"):
    nets.get_model("resnet50", 10, aux_logits=True)
  with pytest.raises(ValueError, match=r"'alexnet_v2'.*batch_norm_epsilon.*supports \['dropout_rate'\]"):
    nets.get_model("alexnet_v2", 10, batch_norm_epsilon=1e-3)


def test_bad_sizes_and_class_counts_error():
  with pytest.raises(ValueError, match="image_size=74 is below the minimum 75.*inception_v3"):
    nets.get_model("inception_v3", 10, image_size=74)
  with pytest.raises(ValueError, match="minimum 195"):
    nets.get_model("alexnet_v2", 10, image_size=160)
  with pytest.raises(ValueError, match="minimum 195"):
    nets.get_model("alexnet", 10, image_size=160)
  with pytest.raises(ValueError, match="num_classes=-1"):
    nets.get_model("cifarnet", -1)


def test_none_overrides_keep_defaults_and_set_values_apply():
  default = nets.get_model("mobilenet_v1_025", 5, dropout_rate=None, batch_norm_momentum=None,
                           batch_norm_epsilon=None)
  assert default.get_layer("logits_dropout").rate == pytest.approx(1e-3)  # keras MobileNet's top
  bns = [l for l in default.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert bns and all(l.momentum == 0.99 and l.epsilon == 1e-3 for l in bns)
  custom = nets.get_model("mobilenet_v1_025", 5, dropout_rate=0.3, batch_norm_momentum=0.9997,
                          batch_norm_epsilon=1e-2)
  assert custom.get_layer("logits_dropout").rate == pytest.approx(0.3)
  bns = [l for l in custom.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert all(l.momentum == 0.9997 and l.epsilon == 1e-2 for l in bns)
  # The epsilon override reaches the computation, not only the attribute.
  custom.set_weights(default.get_weights())
  x = _images(32)
  # (Relative comparison: fresh MobileNet logits are ~1e-18.)
  assert not np.allclose(default(x, training=False), custom(x, training=False), rtol=1e-3, atol=0)
  assert nets.get_model("cifarnet", 5).get_layer("dropout3").rate == 0.5  # TF-Slim's keep 0.5
  assert nets.get_model("resnet50", 5).get_layer("logits_dropout").rate == 0.0


# ---------------------------------------------------------------------------
# Every registered net.


def test_forward_at_min_size_gives_finite_logits(built):
  spec, model = built
  assert tuple(model.input_shape) == (None, None, None, 3)  # image_size=None: any size
  logits = model(_images(spec.min_image_size), training=False)
  assert tuple(logits.shape) == (2, NUM_CLASSES)
  assert logits.dtype == "float32"
  assert np.all(np.isfinite(logits))


def test_trainable_parameter_count(built):
  spec, model = built
  assert nets.trainable_parameter_count(model) == PARAMS_AT_102[spec.name]


def test_head_variables_and_only_they_start_with_logits(built):
  _, model = built
  head = [v.path for v in model.get_layer("logits").weights]
  assert sorted(p.split("/")[-1] for p in head) == ["bias", "kernel"]
  prefixed = [v.path for v in model.weights if v.path.startswith("logits")]
  assert sorted(prefixed) == sorted(head)
  assert model.get_layer("logits").weights[0].shape[-1] == NUM_CLASSES


def test_weight_decay_variables_are_kernels_only(built):
  _, model = built
  decayed = nets.weight_decay_variables(model)
  names = {v.path.split("/")[-1] for v in decayed}
  assert names <= {"kernel", "depthwise_kernel", "pointwise_kernel"}
  kernel_layers = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                   keras.layers.SeparableConv2D, keras.layers.Dense)
  expected = sum(len([w for w in l.trainable_weights if "kernel" in w.path.split("/")[-1]])
                 for l in model.layers if isinstance(l, kernel_layers))
  assert len(decayed) == expected > 0
  assert not any(v.path.split("/")[-1] in ("bias", "gamma", "beta", "moving_mean",
                                           "moving_variance") for v in decayed)


def test_features_mode(built):
  spec, model = built
  features = nets.get_model(spec.name, 0)
  assert not any(l.name.startswith("logits") for l in features.layers)
  out = features(_images(spec.min_image_size, batch=1), training=False)
  # Pooled features feed the logits layer of the classifier: same width.
  assert tuple(out.shape) == (1, model.get_layer("logits").weights[0].shape[-2])
  assert np.all(np.isfinite(out))
  keras.backend.clear_session()


def test_gradcam_feature_layer_is_the_last_spatial_map(built):
  """Every net declares its last spatial feature map (Grad-CAM's layer): a 4-D output after which no layer with
  weights keeps a map larger than 1x1, and Grad-CAM on it gives one finite 0..1 heatmap per image."""
  from slimflowers.deploy import gradcam  # pylint: disable=g-import-not-at-top
  spec, model = built
  names = [l.name for l in model.layers]
  assert spec.feature_layer in names, f"{spec.name}: feature_layer {spec.feature_layer!r} is not one of its layers"
  later = [l for l in model.layers[names.index(spec.feature_layer) + 1:]
           if l.weights and len(l.output.shape) == 4]
  probe = keras.Model(model.inputs, [model.get_layer(spec.feature_layer).output] + [l.output for l in later])
  for size in [s for s in (96, 160, 224) if s >= spec.min_image_size]:  # the smallest with a map above 1x1
    maps = probe.compute_output_spec(keras.KerasTensor((1, size, size, 3)))  # shapes only, nothing computed
    maps = maps if isinstance(maps, (list, tuple)) else [maps]
    if maps[0].shape[1] > 1:
      break
  assert len(maps[0].shape) == 4 and maps[0].shape[1] > 1, (spec.name, maps[0].shape)
  for layer, out in zip(later, maps[1:]):
    assert out.shape[1] * out.shape[2] == 1, f"{spec.name}: {layer.name} after the feature layer is {out.shape}"
  cams, probabilities, classes = gradcam.for_model(model, spec.name).explain(_images(size), [-1, 3])
  assert cams.shape == (2,) + tuple(maps[0].shape[1:3]) and probabilities.shape == (2, NUM_CLASSES)
  assert probabilities[0, classes[0]] == probabilities[0].max() and classes[1] == 3
  assert np.all(np.isfinite(cams)) and cams.min() >= 0 and np.all((cams.max(axis=(1, 2)) == 1) |
                                                                   (cams.max(axis=(1, 2)) == 0))


# ---------------------------------------------------------------------------
# Inception-v3's auxiliary head, mixed precision, GFLOPs.


def test_inception_v3_aux_logits_head():
  model = nets.get_model("inception_v3", NUM_CLASSES, aux_logits=True)  # any image size
  assert tuple(model.get_layer("aux_logits_conv_2a_5x5").kernel.shape) == (5, 5, 128, 768)
  for size in (299, 75):  # TF-Slim's geometry (Mixed_6e 17x17), and the minimum (3x3)
    out = model(_images(size, batch=1), training=False)
    assert set(out) == {"logits", "aux_logits"}
    assert tuple(out["logits"].shape) == tuple(out["aux_logits"].shape) == (1, NUM_CLASSES)
    assert np.all(np.isfinite(out["aux_logits"]))
  mixed_6e = keras.Model(model.input, model.get_layer("mixed7").output)
  assert tuple(mixed_6e(_images(299, batch=1)).shape[1:3]) == (17, 17)
  # Aux head: conv 128 1x1 + BN beta, conv 768 5x5 + BN beta, conv classes 1x1 + bias.
  aux = 768 * 128 + 128 + 5 * 5 * 128 * 768 + 768 + 768 * NUM_CLASSES + NUM_CLASSES
  assert nets.trainable_parameter_count(model) == PARAMS_AT_102["inception_v3"] + aux
  aux_paths = [v.path for v in model.weights if v.path.startswith("aux_logits")]
  # conv 1x1 kernel, BN (no scale) beta/mean/variance, conv 5x5 kernel, BN x3, final kernel + bias.
  assert len(aux_paths) == 10
  assert {v.path for v in model.get_layer("logits").weights} == {
      v.path for v in model.weights if v.path.startswith("logits")}
  with pytest.raises(ValueError, match="num_classes > 0"):
    nets.get_model("inception_v3", 0, aux_logits=True)
  keras.backend.clear_session()


def test_aux_pool_and_reducible_conv_match_tf_slim():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from nets import inception  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  conv = inception.ReducibleConv(4, 5)
  conv.build((None, None, None, 3))
  kernel = conv.kernel.numpy()
  dynamic = tf.function(lambda x: conv(x), input_signature=[tf.TensorSpec([None, None, None, 3])])
  for size, crop in ((5, slice(0, 5)), (7, slice(0, 5)), (3, slice(1, 4)), (1, slice(2, 3))):
    x = rng.normal(size=(2, size, size, 3)).astype("float32")
    want = tf.nn.conv2d(x, kernel[crop, crop], 1, "VALID").numpy()
    np.testing.assert_allclose(conv(x).numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dynamic(x).numpy(), want, rtol=1e-5, atol=1e-5)
  pool = inception.AuxPool()
  dynamic_pool = tf.function(lambda x: pool(x), input_signature=[tf.TensorSpec([None, None, None, 3])])
  x = rng.normal(size=(1, 17, 17, 3)).astype("float32")
  for fn in (pool, dynamic_pool):
    np.testing.assert_allclose(fn(x).numpy(), tf.nn.avg_pool2d(x, 5, 3, "VALID").numpy(), atol=1e-6)
    np.testing.assert_allclose(fn(x[:, :3, :3]).numpy(),
                               x[:, :3, :3].mean(axis=(1, 2), keepdims=True), atol=1e-6)


def test_mixed_precision_logits_stay_float32():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    for name, kwargs, size in (("cifarnet", {}, 32), ("mobilenet_v1_025", {}, 32),
                               ("inception_v3", {"aux_logits": True}, 75)):
      model = nets.get_model(name, 7, **kwargs)
      out = model(_images(size), training=False)
      outs = out if isinstance(out, dict) else {"logits": out}
      for key, value in outs.items():
        assert value.dtype == "float32", (name, key)
        assert tuple(value.shape) == (2, 7) and np.all(np.isfinite(value)), (name, key)
  finally:
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session()


def test_gflops_counts_the_graph():
  # MobileNet v1 1.0 at 224: 0.57 GMACs (SOURCES.md §3); the profiler counts 2 per MAC.
  model = nets.get_model("mobilenet", 1000)
  assert 1.0 < nets.gflops(model, 224) < 1.3
  assert nets.gflops(nets.get_model("cifarnet", 10), 64) == pytest.approx(
      4 * nets.gflops(nets.get_model("cifarnet", 10), 32), rel=0.05)
