"""`--checkpoint_path=imagenet` (slimflowers/core/pretrained.py), against localhost only.

Files come from a local mirror directory or from an HTTP server on 127.0.0.1 that the test starts;
"offline" is a closed localhost port. The trained end-to-end case fine-tunes mobilenet_v1_025 from
a keras.applications MobileNet (width 0.25) weight file written here under the published name.
"""
import contextlib
import functools
import hashlib
import http.server
import inspect
import os
import socket
import threading

import numpy as np
import pytest

import nets
from slimflowers.core import errors
from slimflowers.core import pretrained
from tests import tiny_data


# ---------------------------------------------------------------------------------------------------------------------
# The table: keras.applications' own names, URLs and hashes


def test_every_keras_applications_net_but_none_other_has_a_file():
  with_app = sorted(n for n in nets.list_models() if nets.get_spec(n).keras_application)
  assert pretrained.nets_with_weights() == with_app
  for name in with_app:
    wf = pretrained.weight_file(name)
    assert wf.name.endswith(".h5") and wf.subdir


def test_file_names_urls_and_hashes_are_keras_applications_own():
  from keras.src.applications import inception_resnet_v2, inception_v3, mobilenet, mobilenet_v2, resnet, vgg16, \
      xception  # pylint: disable=g-import-not-at-top
  base = pretrained.KERAS_BASE_URL
  assert base + pretrained.weight_file("xception").relative_url == xception.WEIGHTS_PATH_NO_TOP
  assert base + pretrained.weight_file("inception_v3").relative_url == inception_v3.WEIGHTS_PATH_NO_TOP
  assert base + pretrained.weight_file("vgg_16").relative_url == vgg16.WEIGHTS_PATH
  assert pretrained.weight_file("vgg_16").includes_top
  for ours, theirs in (("resnet50", "resnet50"), ("resnet101", "resnet101")):
    wf = pretrained.weight_file(ours)
    assert base + wf.relative_url == f"{resnet.BASE_WEIGHTS_PATH}{theirs}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert wf.md5 == resnet.WEIGHTS_HASHES[theirs][1]
  for name, module in (("xception", xception), ("inception_v3", inception_v3), ("vgg_16", vgg16),
                       ("inception_resnet_v2", inception_resnet_v2)):
    assert f'file_hash="{pretrained.weight_file(name).md5}"' in inspect.getsource(module), name
  wf = pretrained.weight_file("inception_resnet_v2")
  assert base + wf.relative_url == inception_resnet_v2.BASE_WEIGHT_URL + wf.name
  assert base + pretrained.weight_file("mobilenet_v1_025", 32).relative_url == \
      mobilenet.BASE_WEIGHT_PATH + "mobilenet_2_5_128_tf_no_top.h5"
  assert base + pretrained.weight_file("mobilenet_v2", 100).relative_url == \
      mobilenet_v2.BASE_WEIGHT_PATH + "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"


@pytest.mark.parametrize("name,size,expected", [
    ("mobilenet_v1", None, "mobilenet_1_0_224_tf_no_top.h5"),
    ("mobilenet_v1_075", 170, "mobilenet_7_5_160_tf_no_top.h5"),
    ("mobilenet_v1_050", 176, "mobilenet_5_0_192_tf_no_top.h5"),  # a tie takes the larger size
    ("mobilenet_v1_025", 300, "mobilenet_2_5_224_tf_no_top.h5"),
    ("mobilenet_v2", 112, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128_no_top.h5")])
def test_mobilenet_takes_its_width_and_the_nearest_published_size(name, size, expected):
  assert pretrained.weight_file(name, size).name == expected


@pytest.mark.parametrize("name", ["cifarnet", "alexnet_v2"])
def test_a_net_without_weights_is_one_line_listing_those_with(name):
  with pytest.raises(errors.BadValue, match=f"{name}' has no ImageNet weights") as e:
    pretrained.weight_file(name)
  assert "\n" not in str(e.value) and "resnet_v1_50" in str(e.value) and "mobilenet_v1_025" in str(e.value)


# ---------------------------------------------------------------------------------------------------------------------
# Fetching: localhost only

BODY = b"weights" * 1000
WF = pretrained.WeightFile("tiny", "tiny_notop.h5", hashlib.md5(BODY).hexdigest())


@contextlib.contextmanager
def serve(directory):
  """An HTTP server on 127.0.0.1 serving `directory`; yields its base URL."""
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
  handler.log_message = lambda *a: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}/"
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def closed_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]  # nothing listens once it is closed


def _write(root, body, wf=WF):
  os.makedirs(root / wf.subdir, exist_ok=True)
  (root / wf.subdir / wf.name).write_bytes(body)


def test_download_from_a_mirror_url_lands_verified_in_the_cache(tmp_path):
  _write(tmp_path / "mirror", BODY)
  with serve(tmp_path / "mirror") as url:
    path = pretrained.fetch(WF, cache=str(tmp_path / "cache"), mirror=url)
  assert path == str(tmp_path / "cache" / WF.name) and open(path, "rb").read() == BODY
  assert os.listdir(tmp_path / "cache") == [WF.name]
  # Cached: no server needed any more.
  assert pretrained.fetch(WF, cache=str(tmp_path / "cache"), mirror=f"http://127.0.0.1:{closed_port()}") == path


def test_a_download_failing_its_hash_leaves_nothing_in_the_cache(tmp_path):
  _write(tmp_path / "mirror", BODY[:-1] + b"X")
  with serve(tmp_path / "mirror") as url, pytest.raises(pretrained.WeightsUnavailable, match="md5") as e:
    pretrained.fetch(WF, cache=str(tmp_path / "cache"), mirror=url)
  assert e.value.exit_code == 2 and "\n" not in str(e.value) and WF.name in str(e.value)
  assert not os.path.exists(tmp_path / "cache") or os.listdir(tmp_path / "cache") == []


def test_a_cached_file_failing_its_hash_is_moved_aside_and_fetched_again(tmp_path):
  cache = tmp_path / "cache"
  cache.mkdir()
  (cache / WF.name).write_bytes(b"truncated")
  _write(tmp_path / "mirror", BODY)
  with serve(tmp_path / "mirror") as url:
    path = pretrained.fetch(WF, cache=str(cache), mirror=url)
  assert open(path, "rb").read() == BODY
  aside = [n for n in os.listdir(cache) if n != WF.name]
  assert len(aside) == 1 and ".bad-md5." in aside[0] and (cache / aside[0]).read_bytes() == b"truncated"


def test_offline_without_a_cached_file_names_the_file_its_url_and_where_to_put_it(tmp_path):
  url = f"http://127.0.0.1:{closed_port()}/base"
  with pytest.raises(pretrained.WeightsUnavailable) as e:
    pretrained.fetch(WF, cache=str(tmp_path / "cache"), mirror=url)
  message = str(e.value)
  assert "\n" not in message and e.value.exit_code == 2
  assert f"{url}/{WF.relative_url}" in message and str(tmp_path / "cache") in message
  assert not os.path.exists(tmp_path / "cache") or os.listdir(tmp_path / "cache") == []


def test_a_local_mirror_directory_is_read_in_place_with_or_without_the_subdirectory(tmp_path):
  _write(tmp_path / "mirror", BODY)
  assert pretrained.fetch(WF, cache=str(tmp_path / "c"), mirror=str(tmp_path / "mirror")) == \
      str(tmp_path / "mirror" / WF.subdir / WF.name)
  (tmp_path / "flat").mkdir()
  (tmp_path / "flat" / WF.name).write_bytes(BODY)
  assert pretrained.fetch(WF, cache=str(tmp_path / "c"), mirror=f"file://{tmp_path / 'flat'}") == \
      str(tmp_path / "flat" / WF.name)
  assert not os.path.exists(tmp_path / "c")  # nothing copied
  (tmp_path / "flat" / WF.name).write_bytes(b"bad")
  with pytest.raises(pretrained.WeightsUnavailable, match="md5"):
    pretrained.fetch(WF, cache=str(tmp_path / "c"), mirror=str(tmp_path / "flat"))
  with pytest.raises(pretrained.WeightsUnavailable, match="not in the SLIMFLOWERS_WEIGHTS_MIRROR directory"):
    pretrained.fetch(WF, cache=str(tmp_path / "c"), mirror=str(tmp_path / "empty"))


def test_cache_is_keras_home_models_else_home_dot_keras(monkeypatch, tmp_path):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
  assert pretrained.cache_dir() == str(tmp_path / "kh" / "models")
  monkeypatch.delenv("KERAS_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert pretrained.cache_dir() == str(tmp_path / "home" / ".keras" / "models")


# ---------------------------------------------------------------------------------------------------------------------
# The trainer


@pytest.fixture(scope="module")
def mobilenet_025_file(tmp_path_factory):
  """A keras.applications MobileNet(alpha=0.25) no-top file with non-initial weights, under the published name."""
  import keras  # pylint: disable=g-import-not-at-top
  app_model = keras.applications.MobileNet(alpha=0.25, include_top=False, weights=None, input_shape=(32, 32, 3))
  rng = np.random.RandomState(0)
  for v in app_model.weights:
    v.assign((rng.uniform(0.5, 1.5, v.shape) if "moving_variance" in v.path
              else rng.normal(0, 0.1, v.shape)).astype("float32"))
  root = tmp_path_factory.mktemp("mirror")
  wf = pretrained.weight_file("mobilenet_v1_025", 32)
  os.makedirs(root / wf.subdir)
  app_model.save_weights(str(root / "x.weights.h5"))  # Keras 3 insists on the suffix; the loader reads content
  os.rename(root / "x.weights.h5", root / wf.subdir / wf.name)
  return root, {v.path: np.array(v.numpy()) for v in app_model.weights}


def test_train_from_imagenet_restores_the_backbone_and_excludes_the_head(tiny_dataset, mobilenet_025_file, tmp_path,
                                                                      monkeypatch):
  root, expected = mobilenet_025_file
  monkeypatch.setenv(pretrained.MIRROR_ENV, str(root))
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
  info = tiny_data.train(tmp_path / "ft", tiny_dataset, model_name="mobilenet_v1_025", checkpoint_path="imagenet",
                         trainable_scopes=["logits"], max_number_of_steps=1)
  assert info["initialized_from"] == str(root / "mobilenet" / "mobilenet_2_5_128_tf_no_top.h5")
  after = tiny_data.checkpoint_weights(str(tmp_path / "ft" / "ckpt-1"), model_name="mobilenet_v1_025")
  backbone = [k for k in after if not k.startswith("logits")]
  assert len(backbone) == len(expected)
  for k in backbone:
    np.testing.assert_array_equal(after[k], expected[k], err_msg=k)


def test_train_from_imagenet_offline_or_without_weights_stops_before_training(tiny_dataset, tmp_path, monkeypatch):
  monkeypatch.setenv(pretrained.MIRROR_ENV, f"http://127.0.0.1:{closed_port()}")
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
  with pytest.raises(pretrained.WeightsUnavailable, match="mobilenet_2_5_128_tf_no_top.h5"):
    tiny_data.train(tmp_path / "ft", tiny_dataset, model_name="mobilenet_v1_025", checkpoint_path="imagenet",
                    max_number_of_steps=1)
  assert not list((tmp_path / "ft").glob("ckpt-*"))
  with pytest.raises(errors.BadValue, match="cifarnet' has no ImageNet weights"):
    tiny_data.train(tmp_path / "ft2", tiny_dataset, checkpoint_path="imagenet", max_number_of_steps=1)
  assert not (tmp_path / "ft2").exists()


def test_the_study_fine_tunes_the_models_with_weights_and_says_which_have_none(tmp_path):
  import io  # pylint: disable=g-import-not-at-top
  from slimflowers.study import children  # pylint: disable=g-import-not-at-top
  from slimflowers.study import driver as study  # pylint: disable=g-import-not-at-top
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=str(tmp_path / "data"), runs_dir=str(tmp_path),
                          train_flags=["--checkpoint_path=imagenet", "--learning_rate=0.01"])
  assert "--checkpoint_path=imagenet" in study.train_command(cfg, "mobilenet_v1_025")
  assert "--checkpoint_path=imagenet" in study.train_command(cfg, "resnet50")  # an alias
  assert "--checkpoint_path=imagenet" not in study.train_command(cfg, "cifarnet")
  assert "--learning_rate=0.01" in study.train_command(cfg, "cifarnet")
  out = io.StringIO()
  with pytest.raises(study.StudyError):  # stops at the missing dataset, after saying which models fine-tune
    study.run_study(cfg, ["cifarnet", "mobilenet_v1_025", "alexnet_v2"], supervisor=children.Supervisor(out))
  assert "no ImageNet weights for cifarnet, alexnet_v2: trained from random init" in out.getvalue()
