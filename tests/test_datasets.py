"""Conversion and get_split on tiny copies of each dataset in its exact upstream layout (no network)."""
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
from PIL import Image
import pytest
import scipy.io
import tensorflow as tf

import datasets
from datasets import conversion
from datasets import dataset_utils
from datasets import flowers
from datasets import flowers17
from datasets import flowers102
from datasets import records
from slimflowers.core import fileio

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _image_bytes(seed, size=(40, 56), fmt="JPEG", mode="RGB", **kwargs):
  rng = np.random.default_rng(seed)
  array = (rng.random((5, 7, 3)) * 255).astype(np.uint8)  # smooth content: JPEG keeps it well
  image = Image.fromarray(array).resize((size[1], size[0]), Image.BILINEAR).convert(mode)
  buf = io.BytesIO()
  image.save(buf, fmt, **kwargs)
  return buf.getvalue()


def _write(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def _tar(archive, root_dir, member_root, mode):
  with tarfile.open(archive, mode) as tar:
    tar.add(os.path.join(root_dir, member_root), arcname=member_root)


def _remote_for(path, name, url="http://127.0.0.1:9/unused"):
  with open(path, "rb") as f:
    data = f.read()
  return dataset_utils.RemoteFile(name, url, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _records(dataset_dir, split_name, name):
  split = datasets.get_split(name, split_name, dataset_dir)
  out = []
  for serialized in tf.data.TFRecordDataset(split.filenames):
    f = records.parse_example(serialized)
    out.append({k: v.numpy() for k, v in f.items()})
  return split, out


def _shard_bytes(dataset_dir):
  names = sorted(f for f in os.listdir(dataset_dir) if f.endswith(".tfrecord"))
  return {n: open(os.path.join(dataset_dir, n), "rb").read() for n in names}


# ------------------------------------------------------------------------------------------------------------- flowers


@pytest.fixture
def flower_photos_tgz(tmp_path, monkeypatch):
  """flower_photos.tgz in the upstream layout (5 class folders + LICENSE.txt), checksum patched in."""
  src = tmp_path / "upstream"
  sources = {}
  for label, class_name in enumerate(flowers.CLASS_NAMES):
    for k in range(3 + label):  # unequal class sizes
      name = f"{class_name[:3]}_{k}.jpg"
      data = _image_bytes(100 * label + k, size=(30 + 3 * k, 44))
      _write(str(src / "flower_photos" / class_name / name), data)
      sources[name] = (label, data)
  _write(str(src / "flower_photos" / "LICENSE.txt"), b"license text")
  archive = str(tmp_path / "flower_photos.tgz")
  _tar(archive, str(src), "flower_photos", "w:gz")
  monkeypatch.setattr(flowers, "FILES", (_remote_for(archive, "flower_photos.tgz"),))
  return archive, sources


def test_flowers_converts_archive_with_labels_from_folders(tmp_path, flower_photos_tgz):
  archive, sources = flower_photos_tgz
  out = str(tmp_path / "flowers")
  meta = datasets.convert("flowers", out, source=archive, validation_size=4, test_size=3, num_workers=1)
  assert meta["num_classes"] == 5
  assert meta["splits"]["validation"]["num_samples"] == 4
  assert meta["splits"]["test"]["num_samples"] == 3
  assert meta["splits"]["train"]["num_samples"] == len(sources) - 7
  assert meta["num_skipped"] == 0
  assert meta["sources"]["flower_photos.tgz"]["sha256"] == flowers.FILES[0].sha256
  with open(os.path.join(out, "labels.txt")) as f:
    assert f.read() == "0:daisy\n1:dandelion\n2:roses\n3:sunflowers\n4:tulips\n"
  seen = set()
  for split_name, n in (("train", len(sources) - 7), ("validation", 4), ("test", 3)):
    split, records = _records(out, split_name, "flowers")
    assert split.num_samples == n == len(records)
    assert split.labels_to_names == dict(enumerate(flowers.CLASS_NAMES))
    for r in records:
      name = r["image/filename"].decode()
      label, data = sources[name]
      assert r["image/class/label"] == label, name
      assert r["image/encoded"] == data  # RGB JPEG kept byte-for-byte
      assert (r["image/height"], r["image/width"]) == Image.open(io.BytesIO(data)).size[::-1]
      assert r["image/format"] == b"jpg"
      seen.add(name)
  assert seen == set(sources)  # every image exactly in one split (names are unique)


def test_flowers_default_split_is_tf_slim(tmp_path, flower_photos_tgz):
  archive, sources = flower_photos_tgz
  out = str(tmp_path / "flowers")
  # The default (350 validation images) does not fit 25 images: the error names both numbers.
  with pytest.raises(ValueError, match="350.*25"):
    datasets.convert("flowers", out, source=archive, num_workers=1)
  meta = datasets.convert("flowers", out, source=archive, validation_size=0.2, num_workers=1)
  assert meta["splits"]["validation"]["num_samples"] == 5 and meta["splits"]["train"]["num_samples"] == 20
  assert meta["options"]["seed"] == 0


def test_offline_download_error_names_file_url_and_path(tmp_path, monkeypatch):
  url = "http://127.0.0.1:9/example_images/flower_photos.tgz"  # the discard port: refused at once
  monkeypatch.setattr(flowers, "FILES", (dataset_utils.RemoteFile("flower_photos.tgz", url, size=10, sha256="0" * 64),))
  monkeypatch.setattr(dataset_utils, "DOWNLOAD_TIMEOUT_SECS", 2)
  out = str(tmp_path / "flowers")
  start = time.time()
  with pytest.raises(dataset_utils.ConversionError) as e:
    datasets.convert("flowers", out, num_workers=1)
  message = str(e.value)
  assert "flower_photos.tgz" in message and url in message and os.path.join(out, "flower_photos.tgz") in message
  assert time.time() - start < 10
  assert not os.path.exists(out)  # no partial download, no temporary file, and no empty directory left


def test_checksum_mismatch_names_file_and_expected_checksum(tmp_path, monkeypatch):
  out = tmp_path / "flowers"
  _write(str(out / "flower_photos.tgz"), b"not the archive")
  remote = dataset_utils.RemoteFile("flower_photos.tgz", "http://x/flower_photos.tgz", size=15, sha256="ab" * 32)
  monkeypatch.setattr(flowers, "FILES", (remote,))
  with pytest.raises(dataset_utils.ConversionError, match=r"flower_photos.tgz: sha256 .* expected (ab)+"):
    datasets.convert("flowers", str(out), num_workers=1)


# ------------------------------------------------------------------------------------------------------------- folder


@pytest.fixture
def odd_folder(tmp_path):
  """Class folders with every kind of file the converter meets: good, convertible, broken."""
  root = tmp_path / "photos"
  good = _image_bytes(1)
  files = {
      "cats/rgb.jpg": good,
      "cats/progressive.jpg": _image_bytes(2, progressive=True),
      "cats/gray.jpg": _image_bytes(3, mode="L"),
      "cats/cmyk.jpg": _image_bytes(4, mode="CMYK"),
      "dogs/picture.png": _image_bytes(5, fmt="PNG"),
      "dogs/rgba.png": _image_bytes(6, fmt="PNG", mode="RGBA"),
      "dogs/anim.gif": _image_bytes(7, fmt="GIF"),
      "dogs/bitmap.bmp": _image_bytes(8, fmt="BMP"),
      "dogs/nested/deep.jpg": _image_bytes(9),
      "dogs/truncated.jpg": good[:len(good) // 2],
      "owls/notes.txt": b"not an image",
      "owls/empty.jpg": b"",
      "owls/ok.jpg": _image_bytes(10),
  }
  for rel, data in files.items():
    _write(str(root / rel), data)
  return str(root), files


def test_folder_converts_odd_files_and_skips_broken_ones(tmp_path, odd_folder, caplog):
  root, files = odd_folder
  out = str(tmp_path / "out")
  with caplog.at_level("INFO"), caplog.at_level("INFO", logger="absl"):  # an earlier test may quiet absl
    meta = datasets.convert("folder", out, source=root, validation_size=0, num_workers=1)
  # What the conversion announces is what it writes: files first, then the images written.
  lines = [r.getMessage() for r in caplog.records]
  assert any(m.startswith(f"Converting folder: {len(files)} files (train {len(files)})") for m in lines), lines
  assert any(m.startswith(f"Wrote {out}: train {len(files) - 3} images (3 of the {len(files)} files skipped)")
             for m in lines), lines
  assert meta["class_names"] == ["cats", "dogs", "owls"]
  skipped = {s["file"]: s["reason"] for s in meta["skipped"]}
  assert set(skipped) == {"dogs/truncated.jpg", "owls/notes.txt", "owls/empty.jpg"}
  assert "decode" in skipped["dogs/truncated.jpg"] and "not a JPEG" in skipped["owls/notes.txt"]
  assert meta["num_skipped"] == 3
  assert len(meta["sources"]["source/"]["tree_sha256"]) == 64
  split, records = _records(out, "train", "folder")
  assert split.num_samples == len(records) == len(files) - 3
  by_name = {r["image/filename"].decode(): r for r in records}
  for rel, data in files.items():
    name = os.path.basename(rel)
    if rel in skipped:
      assert name not in by_name
      continue
    r = by_name[name]
    assert r["image/class/label"] == ["cats", "dogs", "owls"].index(rel.split("/")[0])
    image = tf.io.decode_jpeg(r["image/encoded"], channels=0).numpy()
    assert image.shape == (r["image/height"], r["image/width"], 3) == (40, 56, 3), rel
    assert tf.image.extract_jpeg_shape(r["image/encoded"]).numpy()[2] == 3
    if name in ("rgb.jpg", "progressive.jpg", "deep.jpg", "ok.jpg"):
      assert r["image/encoded"] == data
    else:
      assert r["image/encoded"] != data  # re-encoded as RGB JPEG
  # The PNG keeps its pixels up to JPEG quality-95 error.
  png = np.asarray(Image.open(io.BytesIO(files["dogs/picture.png"])), dtype=np.float32)
  jpg = tf.io.decode_jpeg(by_name["picture.png"]["image/encoded"]).numpy().astype(np.float32)
  assert np.abs(png - jpg).mean() < 12


def test_a_failing_worker_stops_the_conversion_after_the_running_shards_are_written(tmp_path, odd_folder,
                                                                                     monkeypatch):
  """An error in one worker thread fails the conversion; the staging directory is removed only once no other
  thread writes into it, so nothing is left behind and nothing looks complete."""
  root, _ = odd_folder
  out = tmp_path / "out"
  out.mkdir()
  write_shard = conversion.write_shard
  failed, removed, running, at_removal = threading.Event(), threading.Event(), [], []

  def flaky(task):
    if task["index"] == 0 and task["split"] == "train":
      failed.set()
      raise OSError("disk full")
    running.append(task["index"])
    failed.wait(10)
    removed.wait(0.5)  # a worker still writing when the driver gives up (bounded: never comes when it is right)
    try:
      return write_shard(task)
    finally:
      running.remove(task["index"])

  rmtree = fileio.rmtree

  def watched_rmtree(path):
    at_removal.append(list(running))
    removed.set()
    rmtree(path)

  monkeypatch.setattr(conversion, "write_shard", flaky)
  monkeypatch.setattr(fileio, "rmtree", watched_rmtree)
  with pytest.raises(OSError, match="disk full"):
    datasets.convert("folder", str(out), source=root, validation_size=0, num_shards=4, num_workers=2)
  assert at_removal == [[]]
  assert sorted(os.listdir(out)) == []  # no staging directory, no shard, no dataset.json (the lock is gone too)


def test_conversion_is_deterministic_and_rerun_is_a_noop(tmp_path, odd_folder):
  root, _ = odd_folder
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  meta = datasets.convert("folder", a, source=root, validation_size=3, test_size=2, num_shards=2, num_workers=1)
  meta_b = datasets.convert("folder", b, source=root, validation_size=3, test_size=2, num_shards=2, num_workers=2)
  assert _shard_bytes(a) == _shard_bytes(b) and len(_shard_bytes(a)) == 6  # whatever the number of workers
  assert {k: v for k, v in meta_b.items() if k != "conversion_images_per_sec"} == {
      k: v for k, v in meta.items() if k != "conversion_images_per_sec"}
  with open(os.path.join(a, "dataset.json")) as f:
    written = json.load(f)
  assert written["splits"] == meta["splits"]
  mtimes = {n: os.stat(os.path.join(a, n)).st_mtime_ns for n in os.listdir(a)}
  again = datasets.convert("folder", a, source=root, validation_size=3, test_size=2, num_shards=2, num_workers=1)
  assert again == meta
  assert {n: os.stat(os.path.join(a, n)).st_mtime_ns for n in os.listdir(a)} == mtimes
  with pytest.raises(dataset_utils.ConversionError, match="--overwrite"):
    datasets.convert("folder", a, source=root, validation_size=4, num_workers=1)
  redone = datasets.convert("folder", a, source=root, validation_size=4, num_workers=1, overwrite=True)
  assert redone["options"]["validation_size"] == 4 and "test" not in redone["splits"]
  # Split sizes count the files found; a skipped file leaves whichever split it fell in.
  assert sum(s["num_samples"] for s in redone["splits"].values()) == 10
  assert 4 - redone["num_skipped"] <= redone["splits"]["validation"]["num_samples"] <= 4
  assert sorted(f for f in os.listdir(a) if f.endswith(".tfrecord")) == sorted(
      f for s in redone["splits"].values() for f in s["files"])  # old shards removed


def test_options_that_do_not_apply_are_errors(tmp_path):
  with pytest.raises(ValueError, match="--split_index does not apply to --dataset_name=flowers"):
    datasets.convert("flowers", str(tmp_path), split_index=2)
  with pytest.raises(ValueError, match=r"--validation_size=-1.0 must be >= 0"):
    dataset_utils.resolve_size(-1.0, 10, "validation_size")


# --------------------------------------------------------------------------------------------------------- get_split


def test_get_split_errors_say_what_exists_and_what_to_run(tmp_path, odd_folder):
  with pytest.raises(ValueError, match="Unknown dataset 'roses'.*flowers, flowers102, flowers17, folder"):
    datasets.get_split("roses", "train", str(tmp_path))
  missing = str(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match=r"(?s)does not exist.*download_and_convert_data.py --dataset_name=flowers "
                     r"--dataset_dir=" + missing):
    datasets.get_split("flowers", "train", missing)
  with pytest.raises(FileNotFoundError, match=r"--dataset_name=folder --dataset_dir=\S+ --source=YOUR_PHOTOS_DIR"):
    datasets.get_split("folder", "train", missing)  # the command that fixes it must work as printed
  with pytest.raises(FileNotFoundError, match="conversion incomplete, re-run download_and_convert_data.py"):
    datasets.get_split("flowers", "train", str(tmp_path))
  root, _ = odd_folder
  out = str(tmp_path / "out")
  datasets.convert("folder", out, source=root, validation_size=2, num_workers=1)
  with pytest.raises(ValueError, match="'test' is not in .*splits: train, validation"):
    datasets.get_split("folder", "test", out)
  with pytest.raises(ValueError, match="holds dataset 'folder', not 'flowers'"):
    datasets.get_split("flowers", "train", out)
  os.remove(datasets.get_split("folder", "train", out).filenames[0])
  with pytest.raises(FileNotFoundError, match="conversion incomplete"):
    datasets.get_split("folder", "train", out)


@pytest.mark.slow
def test_kill_mid_conversion_never_looks_complete(tmp_path):
  root = tmp_path / "photos"
  for i in range(240):
    _write(str(root / f"c{i % 3}" / f"{i:03d}.jpg"), _image_bytes(i, size=(120, 160)))
  out = str(tmp_path / "out")
  cmd = [sys.executable, os.path.join(REPO, "download_and_convert_data.py"), "--dataset_name=folder",
         f"--source={root}", f"--dataset_dir={out}", "--num_shards=120", "--num_workers=1", "--validation_size=0"]
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 90
    staged = []
    while time.time() < deadline and proc.poll() is None:
      staging = [d for d in os.listdir(out)] if os.path.isdir(out) else []
      staged = [f for d in staging if d.startswith(".convert-tmp-") for f in os.listdir(os.path.join(out, d))]
      if len(staged) >= 3:  # some shards written, most not
        break
      time.sleep(0.005)
    assert proc.poll() is None, "conversion finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  finally:
    if proc.poll() is None:
      proc.kill()
  assert staged
  assert not os.path.exists(os.path.join(out, "dataset.json"))
  with pytest.raises(FileNotFoundError, match="conversion incomplete, re-run download_and_convert_data.py"):
    datasets.get_split("folder", "train", out)
  meta = datasets.convert("folder", out, source=str(root), validation_size=0, num_shards=4, num_workers=1)
  assert meta["splits"]["train"]["num_samples"] == 240
  assert [d for d in os.listdir(out) if d.startswith(".convert-tmp-")] == []


# --------------------------------------------------------------------------------------------------------- Oxford 17


def _oxford_jpg_tree(root, ids, digits):
  sources = {}
  for i in ids:
    name = f"image_{i:0{digits}d}.jpg"
    data = _image_bytes(i, size=(32, 24 + i % 7))
    _write(os.path.join(root, "jpg", name), data)
    sources[name] = data
  return sources


def test_flowers17_splits_and_labels_from_datasplits_mat(tmp_path, monkeypatch):
  ids = [1, 2, 80, 81, 160, 161, 641, 1281, 1359, 1360]
  src = str(tmp_path / "upstream")
  sources = _oxford_jpg_tree(src, ids, 4)
  _write(os.path.join(src, "jpg", "files.txt"), "\n".join(sorted(sources)).encode())
  mat = {}
  for k, rot in ((1, 0), (2, 3), (3, 6)):
    order = ids[rot:] + ids[:rot]
    mat[f"trn{k}"] = np.array([order[:5]], np.float64)  # (1, N) like upstream
    mat[f"val{k}"] = np.array([order[5:8]], np.float64)
    mat[f"tst{k}"] = np.array([order[8:]], np.float64)
  dl = tmp_path / "downloads"
  os.makedirs(dl)
  scipy.io.savemat(str(dl / "datasplits.mat"), mat)
  _tar(str(dl / "17flowers.tgz"), src, "jpg", "w:gz")
  monkeypatch.setattr(flowers17, "FILES", (_remote_for(str(dl / "17flowers.tgz"), "17flowers.tgz"),
                                           _remote_for(str(dl / "datasplits.mat"), "datasplits.mat")))
  for split_index in (1, 2):
    out = str(tmp_path / f"f17_{split_index}")
    meta = datasets.convert("flowers17", out, source=str(dl), split_index=split_index, num_workers=1)
    assert {s: m["num_samples"] for s, m in meta["splits"].items()} == {"train": 5, "validation": 3, "test": 2}
    assert meta["class_names"] == list(flowers17.CLASS_NAMES) and meta["num_classes"] == 17
    for split_name, key in (("train", "trn"), ("validation", "val"), ("test", "tst")):
      _, records = _records(out, split_name, "flowers17")
      names = [r["image/filename"].decode() for r in records]
      assert names == [f"image_{int(i):04d}.jpg" for i in mat[f"{key}{split_index}"].ravel()]
      for r, name in zip(records, names):
        assert r["image/class/label"] == (int(name[6:10]) - 1) // 80
        assert r["image/encoded"] == sources[name]
  with pytest.raises(ValueError, match="--split_index=4"):
    datasets.convert("flowers17", str(tmp_path / "bad"), source=str(dl), split_index=4, num_workers=1)


# -------------------------------------------------------------------------------------------------------- Oxford 102


def test_flowers102_labels_from_mat_and_plain_tar_opened_by_content(tmp_path, monkeypatch):
  n_images = 14
  src = str(tmp_path / "upstream")
  sources = _oxford_jpg_tree(src, range(1, n_images + 1), 5)
  labels = np.array([[((i * 37) % 102) + 1 for i in range(n_images)]], np.uint8)  # (1, N), values 1..102
  dl = tmp_path / "downloads"
  os.makedirs(dl)
  scipy.io.savemat(str(dl / "imagelabels.mat"), {"labels": labels})
  setid = {"trnid": np.array([[3, 1, 4, 9]], np.uint16), "valid": np.array([[2, 5, 14]], np.uint16),
           "tstid": np.array([[6, 7, 8, 10, 11, 12, 13]], np.uint16)}
  scipy.io.savemat(str(dl / "setid.mat"), setid)
  _tar(str(dl / "102flowers.tgz"), src, "jpg", "w")  # ".tgz" but an uncompressed tar, as upstream
  with open(dl / "102flowers.tgz", "rb") as f:
    assert f.read(2) != b"\x1f\x8b"
  monkeypatch.setattr(flowers102, "FILES", tuple(_remote_for(str(dl / n), n)
                                                 for n in ("102flowers.tgz", "imagelabels.mat", "setid.mat")))
  out = str(tmp_path / "f102")
  meta = datasets.convert("flowers102", out, source=str(dl), num_workers=1)
  assert {s: m["num_samples"] for s, m in meta["splits"].items()} == {"train": 4, "validation": 3, "test": 7}
  assert meta["num_classes"] == 102
  with open(os.path.join(out, "labels.txt")) as f:
    lines = f.read().splitlines()
  assert len(lines) == 102 and lines[0] == "0:pink primrose" and lines[101] == "101:blackberry lily"
  for split_name, key in (("train", "trnid"), ("validation", "valid"), ("test", "tstid")):
    split, records = _records(out, split_name, "flowers102")
    assert [r["image/filename"].decode() for r in records] == [f"image_{i:05d}.jpg" for i in setid[key].ravel()]
    for r in records:
      image_id = int(r["image/filename"][6:11])
      assert r["image/class/label"] == labels[0, image_id - 1] - 1
      assert r["image/encoded"] == sources[r["image/filename"].decode()]
    assert split.labels_to_names[0] == "pink primrose"
  assert set(meta["sources"]) == {"102flowers.tgz", "imagelabels.mat", "setid.mat"}
