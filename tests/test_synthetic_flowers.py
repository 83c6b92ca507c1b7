"""synthetic_flowers: deterministic generation, flower_photos layout, conversion through the flowers path."""
import os

import numpy as np
import pytest
import tensorflow as tf

import datasets
from datasets import dataset_utils
from datasets import records
from datasets import synthetic_flowers

NUM_IMAGES = 20


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("synthetic"))
  meta = datasets.convert("synthetic_flowers", out, num_images=NUM_IMAGES, seed=3, num_workers=1)
  return out, meta


def _shards(dataset_dir):
  return {f: open(os.path.join(dataset_dir, f), "rb").read()
          for f in sorted(os.listdir(dataset_dir)) if f.endswith(".tfrecord")}


def test_images_are_a_pure_function_of_seed_and_index():
  a = [synthetic_flowers.generate_image(0, i) for i in range(10)]
  b = [synthetic_flowers.generate_image(0, i) for i in range(10)]
  c = synthetic_flowers.generate_image(1, 0)
  for (name_a, img_a, q_a), (name_b, img_b, q_b) in zip(a, b):
    assert name_a == name_b and q_a == q_b
    np.testing.assert_array_equal(img_a, img_b)
  assert [name for name, _, _ in a] == list(synthetic_flowers.CLASS_NAMES) * 2
  assert c[1].shape != a[0][1].shape or not np.array_equal(c[1], a[0][1])
  shapes = {img.shape for _, img, _ in a}
  assert len(shapes) > 5 and all(160 <= h <= 400 and 160 <= w <= 400 and ch == 3 for h, w, ch in shapes)
  assert all(60 <= q <= 95 for _, _, q in a)
  # Not a flat picture: backgrounds are cluttered, flowers contrast with them.
  assert all(img.std() > 20 for _, img, _ in a)


def test_convert_writes_flower_photos_layout_and_labels(converted):
  out, meta = converted
  assert meta["class_names"] == list(synthetic_flowers.CLASS_NAMES)
  assert {s: m["num_samples"] for s, m in meta["splits"].items()} == {"train": 16, "validation": 4}
  assert meta["num_skipped"] == 0
  for label, name in enumerate(synthetic_flowers.CLASS_NAMES):
    assert sorted(os.listdir(os.path.join(out, "flower_photos", name))) == [
        f"synth_{i:05d}.jpg" for i in range(label, NUM_IMAGES, 5)]
  for split_name in ("train", "validation"):
    split = datasets.get_split("synthetic_flowers", split_name, out)
    for s in tf.data.TFRecordDataset(split.filenames):
      r = records.parse_example(s)
      index = int(r["image/filename"].numpy()[6:11])
      assert int(r["image/class/label"]) == index % 5
      assert 160 <= int(r["image/height"]) <= 400 and 160 <= int(r["image/width"]) <= 400
  mtimes = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)}
  assert datasets.convert("synthetic_flowers", out, num_images=NUM_IMAGES, seed=3, num_workers=1) == meta
  assert {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in os.listdir(out)} == mtimes


@pytest.mark.slow  # starts a 2-process pool (each worker imports TensorFlow)
def test_same_seed_same_bytes_whatever_the_number_of_workers(converted, tmp_path):
  out, meta = converted
  other = str(tmp_path / "two_workers")
  meta2 = datasets.convert("synthetic_flowers", other, num_images=NUM_IMAGES, seed=3, num_workers=2)
  assert meta2["splits"] == meta["splits"]
  assert meta2["sources"] == meta["sources"]  # the tree digest of the generated JPEGs
  assert _shards(other) == _shards(out)


def _tree(root):
  """{relative path: bytes} of every file under root."""
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      path = os.path.join(d, f)
      with open(path, "rb") as fh:
        out[os.path.relpath(path, root)] = fh.read()
  return out


@pytest.mark.parametrize("where", ["source", "dataset_dir"])
def test_never_replaces_a_folder_it_did_not_generate(tmp_path, where):
  """A user's photo folder (as --source, or real flower_photos in the dataset dir) is refused, byte for byte intact."""
  out = tmp_path / "out"
  photos = tmp_path / "my_photos" if where == "source" else out / "flower_photos"
  (photos / "daisy").mkdir(parents=True)
  (photos / "daisy" / "holiday.jpg").write_bytes(b"\xff\xd8\xff precious")
  (photos / "notes.txt").write_text("mine")
  before = _tree(str(photos))
  kwargs = {"source": str(photos)} if where == "source" else {}
  with pytest.raises(dataset_utils.ConversionError, match=r"already exists and was not generated.*left untouched"):
    datasets.convert("synthetic_flowers", str(out), num_images=NUM_IMAGES, num_workers=1, **kwargs)
  assert _tree(str(photos)) == before


def test_a_generated_tree_is_regenerated_only_when_it_holds_nothing_else(tmp_path):
  """Other settings replace a tree the generator wrote; a photo the user added to it stops that, intact."""
  root = tmp_path / "flowers"
  synthetic_flowers.generate(str(root), NUM_IMAGES, seed=0)
  mine = root / "daisy" / "holiday.jpg"
  mine.write_bytes(b"\xff\xd8\xff precious")
  before = _tree(str(root))
  with pytest.raises(dataset_utils.ConversionError, match=r"holds files the generator did not write.*holiday\.jpg"):
    synthetic_flowers.generate(str(root), NUM_IMAGES + 5, seed=0)
  assert _tree(str(root)) == before
  mine.unlink()
  synthetic_flowers.generate(str(root), NUM_IMAGES + 5, seed=0)  # only its own files: replaced
  assert sum(len(files) for _, _, files in os.walk(root)) == NUM_IMAGES + 5 + 1  # the images and the marker
