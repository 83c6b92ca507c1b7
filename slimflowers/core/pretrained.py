r"""`--checkpoint_path=imagenet`: keras.applications' ImageNet weight file for a net, by name, verified and cached.

    python train_image_classifier.py --model_name=resnet50 --checkpoint_path=imagenet ...
    # FINE-TUNING: ImageNet weights resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (md5 checked) ...

One table (`IMAGENET_WEIGHTS`) says which file each net takes: keras.applications' own file
names, URLs and md5 hashes (from keras/src/applications/*.py; SOURCES.md). The file lands
where keras.applications caches it (`$KERAS_HOME/models`, else `~/.keras/models`), so a
file Keras already downloaded is reused and the other way round. The no-top file is taken,
so the new head starts fresh -- except VGG-16, whose fc6/fc7 (keras' fc1/fc2) only the
full file holds; its 1,000-class `predictions` layer is never loaded into our `logits`.

A download goes to a temporary name in the cache and becomes the file only once its md5
matches (MobileNet files have no published hash: their size is checked against what the
server announced). `SLIMFLOWERS_WEIGHTS_MIRROR` replaces keras.applications' base URL by
another URL or by a local directory (same layout, `resnet/resnet50_..._notop.h5`, or the
file directly in it): a firewall's mirror or an offline cluster's shared disk.
"""
import dataclasses
import hashlib
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request

from absl import logging

import nets
from slimflowers.core import errors
from slimflowers.core import fileio

IMAGENET = "imagenet"  # the --checkpoint_path value
KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
MIRROR_ENV = "SLIMFLOWERS_WEIGHTS_MIRROR"
DOWNLOAD_TIMEOUT_SECS = 60


class WeightsUnavailable(errors.UserError, RuntimeError):
  """The weight file cannot be had (offline, no mirror, a bad hash): the message says where to put it."""


@dataclasses.dataclass(frozen=True)
class WeightFile:
  """One keras.applications weight file: its path under the base URL and its md5 (None: Keras publishes none)."""
  subdir: str
  name: str
  md5: str = None
  includes_top: bool = False

  @property
  def relative_url(self):
    return f"{self.subdir}/{self.name}"


# keras.applications' files (keras/src/applications/<net>.py: WEIGHTS_PATH_NO_TOP and the file_hash next to it).
_FIXED = {
    "inception_v3": WeightFile("inception_v3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                               "bcbd6486424b2319ff4ef7d526e38f63"),
    "inception_resnet_v2": WeightFile("inception_resnet_v2",
                                      "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                      "d19885ff4a710c122648d3b5c3b684e4"),
    "xception": WeightFile("xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                           "b0042744bf5b25fce3cb969f33bebb97"),
    "resnet_v1_50": WeightFile("resnet", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                               "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet_v1_101": WeightFile("resnet", "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                "88cf7a10940856eca736dc7b7e228a21"),
    # Our fc6/fc7 are keras' fc1/fc2 as convolutions: only the full file has them (its `predictions` is skipped).
    "vgg_16": WeightFile("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b",
                         includes_top=True),
}
# MobileNet v1: one file per width and training size (keras/src/applications/mobilenet.py), no hash.
MOBILENET_V1_WIDTHS = {"mobilenet_v1": "1_0", "mobilenet_v1_075": "7_5", "mobilenet_v1_050": "5_0",
                       "mobilenet_v1_025": "2_5"}
MOBILENET_V1_SIZES = (128, 160, 192, 224)
# MobileNet v2 (width 1.0 is the one we register; keras/src/applications/mobilenet_v2.py), no hash.
MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)


def nearest(sizes, image_size):
  """The published size nearest `image_size` (the larger on a tie)."""
  return min(sizes, key=lambda s: (abs(s - image_size), -s))


def nets_with_weights():
  """Canonical names of the nets `--checkpoint_path=imagenet` serves, sorted."""
  return sorted(set(_FIXED) | set(MOBILENET_V1_WIDTHS) | {"mobilenet_v2"})


def has_weights(model_name):
  return nets.get_spec(model_name).name in nets_with_weights()


def weight_file(model_name, image_size=None):
  """The WeightFile for net `model_name` trained at `image_size` (default: the net's); BadValue for a net without."""
  spec = nets.get_spec(model_name)
  image_size = image_size or spec.default_image_size
  if spec.name in _FIXED:
    return _FIXED[spec.name]
  if spec.name in MOBILENET_V1_WIDTHS:
    size = nearest(MOBILENET_V1_SIZES, image_size)
    return WeightFile("mobilenet", f"mobilenet_{MOBILENET_V1_WIDTHS[spec.name]}_{size}_tf_no_top.h5")
  if spec.name == "mobilenet_v2":
    size = nearest(MOBILENET_V2_SIZES, image_size)
    return WeightFile("mobilenet_v2", f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5")
  raise errors.BadValue(f"--checkpoint_path=imagenet: net {spec.name!r} has no ImageNet weights in "
                        f"keras.applications. Nets that have them: {', '.join(nets_with_weights())}.")


def cache_dir():
  """Where keras.applications caches weight files: $KERAS_HOME/models, else ~/.keras/models."""
  home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
  return os.path.join(home, "models")


def md5_of(path):
  h = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _check(path, wf, origin):
  """Raises WeightsUnavailable when `path`'s md5 is not the published one."""
  if wf.md5 is None:
    return
  actual = md5_of(path)
  if actual != wf.md5:
    raise WeightsUnavailable(f"{wf.name} from {origin} has md5 {actual}, not the published {wf.md5}: "
                             f"the file is damaged or another file. Nothing was trained; get the file again.")


def _origin(wf, mirror):
  """(url or None, local path or None) of `wf` at `mirror` (None: keras.applications' base URL)."""
  if not mirror:
    return KERAS_BASE_URL + wf.relative_url, None
  scheme = urllib.parse.urlparse(mirror).scheme
  if scheme in ("http", "https", "ftp"):
    return mirror.rstrip("/") + "/" + wf.relative_url, None
  root = fileio.local_path(mirror) if scheme == "file" else mirror
  for candidate in (os.path.join(root, wf.subdir, wf.name), os.path.join(root, wf.name)):
    if os.path.isfile(candidate):
      return None, candidate
  return None, os.path.join(root, wf.subdir, wf.name)


def fetch(wf, *, cache=None, mirror=None):
  """Returns a local path of weight file `wf`, verified: the mirror's directory, else the cache, else a download.

  A cached file failing its md5 is renamed NAME.bad-md5 (never deleted) and fetched again; a download
  is written under a temporary name in the cache and renamed only after its md5 (or, without one, its
  announced size) checks out, so a failure leaves no file the next run would take as valid.
  """
  cache = cache or cache_dir()
  url, local = _origin(wf, mirror)
  if local is not None:
    if not os.path.isfile(local):
      raise WeightsUnavailable(f"{wf.name} is not in the {MIRROR_ENV} directory {mirror} (looked for {local} and "
                               f"{os.path.join(mirror, wf.name)}); copy it there from "
                               f"{KERAS_BASE_URL + wf.relative_url}.")
    _check(local, wf, local)
    return local
  cached = os.path.join(cache, wf.name)
  if os.path.isfile(cached):
    try:
      _check(cached, wf, cached)
      return cached
    except WeightsUnavailable as e:
      aside = fileio.tmp_name(cached).replace(fileio.TMP_MARK, ".bad-md5.")
      os.rename(cached, aside)
      logging.warning("%s Moved aside to %s; downloading it again.", e, aside)
  logging.warning("Downloading %s from %s into %s", wf.name, url, cache)
  try:
    with fileio.atomic_path(cached) as tmp:
      with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECS) as response, open(tmp, "wb") as out:
        announced = response.headers.get("Content-Length")
        shutil.copyfileobj(response, out, 1 << 20)
      got = os.path.getsize(tmp)
      if announced is not None and got != int(announced):
        raise WeightsUnavailable(f"{wf.name} from {url}: {got:,} of {int(announced):,} bytes arrived. Nothing was "
                                 "trained; run again to download it again.")
      _check(tmp, wf, url)
  except WeightsUnavailable:
    raise
  except (urllib.error.URLError, OSError, ValueError) as e:  # offline, DNS, HTTP error, timeout, refused
    reason = getattr(e, "reason", None) or e
    raise WeightsUnavailable(
        f"Cannot download {wf.name} from {url} ({reason}). Offline: download it elsewhere and put it in {cache} "
        f"(or set {MIRROR_ENV} to a directory or URL holding it), then run again.") from e
  return cached


def resolve(model_name, image_size=None):
  """The verified local ImageNet weight file of `model_name` (see `fetch`), with what was chosen logged."""
  wf = weight_file(model_name, image_size)
  path = fetch(wf, mirror=os.environ.get(MIRROR_ENV) or None)
  logging.info("ImageNet weights for %s: %s (%s, %s).", nets.get_spec(model_name).name, path,
               "md5 checked" if wf.md5 else "no published md5", "with top, head skipped" if wf.includes_top
               else "no top: the head starts fresh")
  return path
