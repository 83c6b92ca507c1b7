"""Input pipeline and preprocessing: shapes, ranges, determinism, resume, eval exactness, sharding."""
import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import datasets
from slimflowers.data import input_pipeline
from slimflowers.data import preprocessing

NUM_TRAIN = 37  # not a multiple of any batch size below, so epochs end mid-batch
NUM_VALIDATION = 11
SIZE = 32


def _jpeg(seed, height, width):
  rng = np.random.default_rng(seed)
  small = (rng.random((4, 5, 3)) * 255).astype(np.uint8)
  image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
  buf = io.BytesIO()
  image.save(buf, "JPEG", quality=90)
  return buf.getvalue()


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
  root = tmp_path_factory.mktemp("photos")
  for i in range(NUM_TRAIN + NUM_VALIDATION):
    class_dir = root / f"class{i % 5}"
    class_dir.mkdir(exist_ok=True)
    (class_dir / f"img{i:03d}.jpg").write_bytes(_jpeg(i, 40 + 7 * (i % 5), 50 + 11 * (i % 3)))
  out = str(tmp_path_factory.mktemp("data"))
  datasets.convert("folder", out, source=str(root), validation_size=NUM_VALIDATION, num_shards=3, num_workers=1)
  return datasets.get_split("folder", "train", out), datasets.get_split("folder", "validation", out)


def _take(ds, n):
  return [tuple(t.numpy() for t in batch) for batch in ds.take(n)]


def _train(split, **kwargs):
  args = dict(batch_size=4, image_size=SIZE, preprocessing_name="inception", seed=7)
  args.update(kwargs)
  return input_pipeline.train_dataset(split, **args)


@pytest.mark.parametrize("name,lo,hi", [("inception", -1.0, 1.0), ("vgg", -124.0, 152.0)])
def test_train_batches_shapes_dtypes_ranges(splits, name, lo, hi):
  train, _ = splits
  images, labels = next(iter(_train(train, preprocessing_name=name)))
  assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == tf.float32
  assert labels.shape == (4,) and labels.dtype == tf.int32
  assert lo <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= hi
  assert float(tf.math.reduce_std(images)) > 0.01
  assert set(labels.numpy()) <= set(range(5))


def test_first_epoch_is_a_permutation_of_the_split(splits):
  """Every record exactly once per epoch, identified by its image/filename, in a shuffled order that changes."""
  train, _ = splits
  # lenet has no augmentation: each training image is its record's eval image, which names the record.
  names, by_image = [], {}
  for serialized in tf.data.TFRecordDataset(train.filenames):
    f = datasets.records.parse_example(serialized)
    names.append(f["image/filename"].numpy())
    image = preprocessing.preprocess_eval(f["image/encoded"], SIZE, "lenet").numpy()
    by_image[image.tobytes()] = names[-1]
  assert len(by_image) == len(names) == NUM_TRAIN  # the images tell the records apart
  stream = _take(_train(train, batch_size=1, preprocessing_name="lenet"), 2 * NUM_TRAIN)
  seen = [by_image[x[0].tobytes()] for x in stream]
  first, second = seen[:NUM_TRAIN], seen[NUM_TRAIN:]
  assert sorted(first) == sorted(names) and sorted(second) == sorted(names)  # each record once per epoch
  assert first != names and second != first  # shuffled, differently each epoch
  labels = {n: int(x[1][0]) for n, x in zip(seen, stream)}
  stored = {n: int(datasets.records.parse_example(r)["image/class/label"])
            for n, r in zip(names, tf.data.TFRecordDataset(train.filenames))}
  assert labels == stored  # and each carries its own label


def test_same_seed_same_stream_other_seed_other_stream(splits):
  train, _ = splits
  a, b, c = _take(_train(train), 3), _take(_train(train), 3), _take(_train(train, seed=8), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x[0], y[0])
    np.testing.assert_array_equal(x[1], y[1])
  assert not np.array_equal(a[0][0], c[0][0])


@pytest.mark.parametrize("in_memory", [True, False])
def test_resume_from_start_index_equals_tail_of_full_stream(splits, monkeypatch, in_memory):
  train, _ = splits
  if not in_memory:
    monkeypatch.setattr(input_pipeline, "IN_MEMORY_LIMIT_BYTES", 0)
  full = _take(_train(train), 23)  # 92 elements: crosses two epoch boundaries
  for k in (1, 9, 18):  # start at batch k, i.e. start_index = 4k (mid-epoch, and after an epoch boundary)
    resumed = _take(_train(train, start_index=4 * k), 23 - k)
    for x, y in zip(full[k:], resumed):
      np.testing.assert_array_equal(x[0], y[0])
      np.testing.assert_array_equal(x[1], y[1])


def test_two_input_pipelines_split_every_global_batch(splits):
  train, _ = splits
  whole = _take(_train(train, batch_size=4), 12)
  parts = [_take(_train(train, batch_size=2, input_context=tf.distribute.InputContext(
      num_input_pipelines=2, input_pipeline_id=p, num_replicas_in_sync=2)), 12) for p in (0, 1)]
  for step in range(12):
    images, labels = whole[step]
    # Pipeline p holds the elements with global index i % 2 == p of each global batch.
    for p in (0, 1):
      np.testing.assert_array_equal(parts[p][step][0], images[p::2])
      np.testing.assert_array_equal(parts[p][step][1], labels[p::2])


@pytest.mark.slow  # tracing RandAugment's many branches takes seconds
def test_randaugment_and_random_erasing_run(splits):
  train, _ = splits
  images, labels = next(iter(_train(train, augment="randaugment", random_erasing=1.0)))
  assert images.shape == (4, SIZE, SIZE, 3) and labels.shape == (4,)
  assert np.isfinite(images.numpy()).all()
  with pytest.raises(ValueError, match="Unknown augment 'mixup'. Known: none, randaugment, autoaugment"):
    _train(train, augment="mixup")


def _eval_reference(split, name):
  out = []
  for s in tf.data.TFRecordDataset(split.filenames):
    f = datasets.records.parse_example(s)
    out.append((preprocessing.preprocess_eval(f["image/encoded"], SIZE, name).numpy(),
                int(f["image/class/label"])))
  return out


@pytest.mark.parametrize("name", ["inception", "vgg"])
def test_eval_is_exact_in_file_order_with_padding(splits, name):
  _, validation = splits
  reference = _eval_reference(validation, name)
  assert len(reference) == NUM_VALIDATION
  batches = list(input_pipeline.eval_dataset(validation, batch_size=4, image_size=SIZE, preprocessing_name=name))
  assert len(batches) == 3  # 11 -> padded to 12
  images = np.concatenate([b["image"].numpy() for b in batches])
  labels = np.concatenate([b["label"].numpy() for b in batches])
  mask = np.concatenate([b["mask"].numpy() for b in batches])
  assert mask.tolist() == [1] * NUM_VALIDATION + [0]
  for i, (image, label) in enumerate(reference):
    np.testing.assert_array_equal(images[i], image)
    assert labels[i] == label
  assert not images[NUM_VALIDATION:].any() and not labels[NUM_VALIDATION:].any()


def test_eval_two_pipelines_count_every_example_once(splits):
  _, validation = splits
  reference = _eval_reference(validation, "inception")
  seen = []
  counts = []
  for p in (0, 1):
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=p, num_replicas_in_sync=2)
    batches = list(input_pipeline.eval_dataset(validation, batch_size=4, image_size=SIZE,
                                               preprocessing_name="inception", input_context=ctx))
    counts.append(len(batches))
    for b in batches:
      for image, label, m in zip(b["image"].numpy(), b["label"].numpy(), b["mask"].numpy()):
        if m:
          seen.append((image, label))
  assert counts == [2, 2]  # 11 padded to 16 = 2 pipelines x 2 batches x 4; no pipeline runs short
  assert len(seen) == NUM_VALIDATION
  for image, label in seen:
    assert sum(np.array_equal(image, r[0]) and label == r[1] for r in reference) == 1


# ------------------------------------------------------------------------------------------------------ preprocessing


def test_normalize_modes():
  image = tf.constant([[[0.0, 127.5, 255.0]]])
  np.testing.assert_allclose(preprocessing.normalize(image, "inception").numpy(), [[[-1.0, 0.0, 1.0]]])
  # caffe: RGB -> BGR, minus the BGR ImageNet means (keras.applications.imagenet_utils).
  np.testing.assert_allclose(preprocessing.normalize(image, "caffe").numpy(),
                             [[[255.0 - 103.939, 127.5 - 116.779, 0.0 - 123.68]]], rtol=1e-6)
  with pytest.raises(ValueError, match="Unknown preprocessing 'tf'. Known: inception, vgg, caffe"):
    preprocessing.normalize(image, "tf")


def test_inception_eval_is_central_crop_then_resize():
  data = _jpeg(3, 80, 64)
  decoded = tf.io.decode_jpeg(data)
  crop = decoded[5:75, 4:60]  # 0.875 of 80 = 70 rows from 5; of 64 = 56 columns from 4
  expected = tf.image.resize(crop, [SIZE, SIZE]) / 127.5 - 1.0
  # decode_and_crop_jpeg upsamples chroma without the pixels outside the window: the edge differs by ~1/255.
  np.testing.assert_allclose(preprocessing.preprocess_eval(data, SIZE, "inception").numpy(), expected.numpy(),
                             atol=0.02)


def test_train_preprocessing_is_a_function_of_the_seed():
  data = _jpeg(4, 90, 120)
  a = preprocessing.preprocess_train(data, SIZE, "inception", tf.constant([1, 2], tf.int64))
  b = preprocessing.preprocess_train(data, SIZE, "inception", tf.constant([1, 2], tf.int64))
  c = preprocessing.preprocess_train(data, SIZE, "inception", tf.constant([1, 3], tf.int64))
  np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.array_equal(a.numpy(), c.numpy())
  v = preprocessing.preprocess_train(data, SIZE, "vgg", tf.constant([1, 2], tf.int64))
  assert v.shape == (SIZE, SIZE, 3)


_LUMA = np.array([0.299, 0.587, 0.114])


def _luma_and_chroma(image):
  luma = image @ _LUMA
  return luma, image - luma[..., None]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_fast_color_distortion_is_brightness_then_saturation(seed):
  # Mid-range colours, so nothing clips: then brightness shifts every pixel's luma by the same delta and
  # saturation scales every pixel's chroma (colour minus luma) by the same factor, in TF-Slim's ranges.
  x = tf.random.stateless_uniform([20, 30, 3], [seed, 9], 112.0, 144.0)
  seeds = tf.random.experimental.stateless_split(tf.constant([seed, 5], tf.int64), num=4)
  y = preprocessing._distort_color(x, seeds, "fast").numpy()  # pylint: disable=protected-access
  luma_x, chroma_x = _luma_and_chroma(x.numpy().astype(np.float64))
  luma_y, chroma_y = _luma_and_chroma(y.astype(np.float64))
  delta = luma_y - luma_x
  sat = (chroma_y * chroma_x).sum() / (chroma_x * chroma_x).sum()
  assert np.ptp(delta) < 1e-3
  # TF-Slim's ranges, drawn from seeds[0] (brightness) and seeds[1] (saturation).
  np.testing.assert_allclose(delta.mean(), tf.random.stateless_uniform([], seeds[0], -32.0, 32.0), atol=1e-3)
  np.testing.assert_allclose(sat, tf.random.stateless_uniform([], seeds[1], 0.5, 1.5), atol=1e-4)
  np.testing.assert_allclose(chroma_y, sat * chroma_x, atol=1e-3)
  # Normalized in the same step: the same map, then [0, 255] -> [-1, 1].
  z = preprocessing._distort_color(x, seeds, "fast", normalize_inception=True).numpy()  # pylint: disable=protected-access
  np.testing.assert_allclose(z, y / 127.5 - 1.0, atol=1e-5)


def test_full_color_distortion_keeps_grey_grey_and_moves_colours_off_the_fast_result():
  grey = tf.fill([8, 8, 3], 100.0) + tf.random.stateless_uniform([8, 8, 1], [0, 1], 0.0, 50.0)
  colour = tf.random.stateless_uniform([8, 8, 3], [0, 2], 0.0, 255.0)
  for s in range(4):
    seeds = tf.random.experimental.stateless_split(tf.constant([s, 5], tf.int64), num=4)
    y = preprocessing._distort_color(grey, seeds, "full").numpy()  # pylint: disable=protected-access
    np.testing.assert_allclose(y[..., 0], y[..., 1], atol=1e-3)  # hue and saturation rotate/scale about grey
    np.testing.assert_allclose(y[..., 0], y[..., 2], atol=1e-3)
    full = preprocessing._distort_color(colour, seeds, "full").numpy()  # pylint: disable=protected-access
    fast = preprocessing._distort_color(colour, seeds, "fast").numpy()  # pylint: disable=protected-access
    assert 0.0 <= full.min() and full.max() <= 255.0
    assert np.abs(full - fast).max() > 1.0


def test_train_color_distortion_modes_share_crop_and_flip():
  # Same seed, so the same crop and flip: "fast" differs from "none" by brightness + saturation only.
  data = _jpeg(5, 90, 120)
  seed = tf.constant([1, 2], tf.int64)
  none = preprocessing.preprocess_train(data, SIZE, "inception", seed, color_distortion="none").numpy()
  fast = preprocessing.preprocess_train(data, SIZE, "inception", seed).numpy()
  full = preprocessing.preprocess_train(data, SIZE, "inception", seed, color_distortion="full").numpy()
  for image in (none, fast, full):
    assert image.shape == (SIZE, SIZE, 3) and -1.0 <= image.min() and image.max() <= 1.0
  unclipped = (np.abs(fast) < 0.999).all(axis=-1)
  assert unclipped.mean() > 0.5
  # The colour draws: preprocess_train gives _distort_color the seeds split off [2:6].
  colour_seeds = tf.random.experimental.stateless_split(seed, num=6)[2:6]
  delta = float(tf.random.stateless_uniform([], colour_seeds[0], -32.0, 32.0)) / 127.5
  sat = float(tf.random.stateless_uniform([], colour_seeds[1], 0.5, 1.5))
  luma_none, chroma_none = _luma_and_chroma(none.astype(np.float64))
  luma_fast, chroma_fast = _luma_and_chroma(fast.astype(np.float64))
  np.testing.assert_allclose((luma_fast - luma_none)[unclipped], delta, atol=2e-3)
  np.testing.assert_allclose(chroma_fast[unclipped], sat * chroma_none[unclipped], atol=2e-3)
  assert abs(delta) > 0.01 or abs(sat - 1.0) > 0.05, "pick a seed whose distortion is visible"
  assert np.abs(fast - none).max() > 0.01 and np.abs(full - fast).max() > 0.01
  with pytest.raises(ValueError, match="Unknown color_distortion 'hsv'. Known: fast, full, none"):
    preprocessing.preprocess_train(data, SIZE, "inception", seed, color_distortion="hsv")


def test_eval_with_filenames_names_every_real_example_in_file_order(splits):
  _, validation = splits
  expected = [datasets.records.parse_example(r)["image/filename"].numpy()
              for r in tf.data.TFRecordDataset(validation.filenames)]
  assert len(set(expected)) == NUM_VALIDATION and all(expected)
  batches = list(input_pipeline.eval_dataset(validation, batch_size=4, image_size=SIZE,
                                             preprocessing_name="inception", with_filenames=True))
  names = [n for b in batches for n in b["filename"].numpy()]
  assert names == expected + [b""]  # the padding example is unnamed


def test_decoded_cache_keeps_order_augmentation_and_resume(splits):
  """The decoded-image cache: the same records in the same order as the JPEG reader, augmented per element
  with the same draws (the crop cut from pixels differs by at most a few grey levels), and exact resume."""
  train, _ = splits
  budget = input_pipeline.decoded_bytes(train)
  assert budget == sum(h * w * 3 for h, w in _record_sizes(train))
  for name in ("inception", "vgg", "cifarnet"):
    jpeg = _take(_train(train, preprocessing_name=name), 12)
    cached = _take(_train(train, preprocessing_name=name, decoded_cache_bytes=budget), 12)
    for (xj, yj), (xc, yc) in zip(jpeg, cached):
      np.testing.assert_array_equal(yj, yc)  # the same records in the same order
      scale = 2.0 if name == "inception" else 255.0  # the output range (vgg/cifarnet unnormalized scale)
      assert np.abs(xj - xc).mean() < 0.02 * scale, name
    full = _take(_train(train, decoded_cache_bytes=budget), 10)
    resumed = _take(_train(train, decoded_cache_bytes=budget, start_index=4 * 3), 7)
    for x, y in zip(full[3:], resumed):
      np.testing.assert_array_equal(x[0], y[0])
      np.testing.assert_array_equal(x[1], y[1])
  # Over budget: the JPEG reader, bit for bit.
  over = _take(_train(train, decoded_cache_bytes=budget - 1), 3)
  for x, y in zip(over, _take(_train(train), 3)):
    np.testing.assert_array_equal(x[0], y[0])


def _record_sizes(split):
  out = []
  for r in tf.data.TFRecordDataset(split.filenames):
    f = datasets.records.parse_example(r, keys=("image/encoded",))
    out.append(tuple(tf.io.decode_jpeg(f["image/encoded"]).shape[:2]))
  return out
