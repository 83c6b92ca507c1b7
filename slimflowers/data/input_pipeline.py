"""Training and evaluation tf.data pipelines over a converted split.

    split = datasets.get_split("synthetic_flowers", "train", "/tmp/synthetic_flowers")
    ds = input_pipeline.train_dataset(split, batch_size=32, image_size=96, preprocessing_name="inception", seed=0)
    images, labels = next(iter(ds))   # float32 [32, 96, 96, 3] in [-1, 1], int32 [32]

Training stream = a pure function of (seed, element index). Element i of the infinite
stream is record perm_e[i mod N] of epoch e = i div N, where perm_e is a permutation seeded
by (seed, e), and its augmentation uses stateless ops seeded by (seed, i). The stream is
built as: global indices from `start_index` -> record lookup (raw bytes, no decoding) ->
`filter(i % num_input_pipelines == input_pipeline_id)` -> parse + preprocess in a parallel,
order-preserving map -> batch -> prefetch. So a run resumed at `start_index = step *
global_batch` sees exactly the batches an uninterrupted run would, and under tf.distribute
every pipeline sees a disjoint part of each global batch (1 replica x batch B and 2
replicas x B/2 see the same global batches).

Two ways to get the records, chosen by the split's size on disk:
- <= IN_MEMORY_LIMIT_BYTES (every flower set): all serialized records are read once into
  memory (raw JPEG bytes, e.g. 230 MB for flower_photos). Exact per-epoch permutations,
  and `start_index` costs nothing.
- larger: shards are read by a deterministic parallel interleave, repeated, and shuffled
  with a seeded buffer of SHUFFLE_BUFFER records; still a pure function of (seed, index),
  but the shuffle is only local and resuming at `start_index` reads (not decodes) every
  skipped record.

augment="randaugment"/"autoaugment" and random_erasing > 0 use official.vision.ops.augment,
whose ops draw from stateful random generators inside a parallel map: those runs are NOT
bit-reproducible across a resume; only augment="none" with random_erasing=0 is.
RandAugment/AutoAugment run on the [0, 255] image before normalization (they work on
uint8 values); RandomErasing runs after normalization, because it fills the erased
rectangle with N(0, 1) noise (timm's convention, meaningful on normalized values only).
"""
import math

import tensorflow as tf

from datasets import records
from slimflowers.data import preprocessing

AUGMENT_NAMES = ("none", "randaugment", "autoaugment")
IN_MEMORY_LIMIT_BYTES = 2 << 30
SHUFFLE_BUFFER = 10_000
_CYCLE_LENGTH = 8  # fixed (not AUTOTUNE) so the interleaved order never changes


def _parse(serialized):
  features = records.parse_example(serialized, keys=("image/encoded", "image/class/label"))
  return features["image/encoded"], features["image/class/label"]


def _pipelines(input_context):
  if input_context is None:
    return 1, 0
  return int(input_context.num_input_pipelines), int(input_context.input_pipeline_id)


def _split_bytes(split):
  return sum(tf.io.gfile.stat(f).length for f in split.filenames)


def _augment_fn(augment):
  if augment not in AUGMENT_NAMES:
    raise ValueError(f"Unknown augment {augment!r}. Known: {', '.join(AUGMENT_NAMES)}.")
  if augment == "none":
    return None
  from official.vision.ops import augment as augment_ops  # pylint: disable=g-import-not-at-top
  op = augment_ops.RandAugment() if augment == "randaugment" else augment_ops.AutoAugment()
  return op.distort


def _check_common(split, batch_size, image_size, preprocessing_name, color_distortion="fast",
                  crop_area_range=preprocessing.DEFAULT_CROP_AREA_RANGE):
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size} must be >= 1.")
  if image_size < 1:
    raise ValueError(f"image_size={image_size} must be >= 1.")
  preprocessing.check_names(preprocessing_name, color_distortion, crop_area_range)
  if split.num_samples < 1:
    raise ValueError(f"Split {split.split_name!r} of {split.dataset_dir} is empty; re-convert with a non-zero size.")


def _check_count(split, n):
  if n != split.num_samples:
    raise ValueError(f"{split.dataset_dir}: {records.DATASET_JSON} says {split.split_name} has {split.num_samples} "
                     f"records but the shards hold {n}. Re-run download_and_convert_data.py with --overwrite.")


def decoded_bytes(split):
  """The split's size once decoded (uint8 RGB), from the heights and widths the converter recorded."""
  sizes = tf.data.TFRecordDataset(split.filenames).map(
      lambda r: records.parse_example(r, keys=("image/height", "image/width")),
      num_parallel_calls=tf.data.AUTOTUNE)
  total = sizes.reduce(tf.constant(0, tf.int64),
                       lambda acc, f: acc + f["image/height"] * f["image/width"] * 3)
  return int(total)


class DecodedCache:
  """Every image of a split decoded once (uint8 RGB, its own size), indexable by record number.

  The pixels are one flat tensor plus offsets, so element i is a slice: random access keeps the
  per-epoch permutations (and exact resume), and the augmentation still runs per element, after
  the cache (never on cached, augmented images).
  """

  def __init__(self, split):
    def decode(serialized):
      f = records.parse_example(serialized, keys=("image/encoded", "image/class/label"))
      image = tf.io.decode_jpeg(f["image/encoded"], channels=3)
      return tf.reshape(image, [-1]), tf.shape(image)[:2], f["image/class/label"]

    ds = tf.data.TFRecordDataset(split.filenames).map(decode, num_parallel_calls=tf.data.AUTOTUNE,
                                                      deterministic=True)
    pixels, shapes, labels = ds.ragged_batch(1 << 30).get_single_element()
    _check_count(split, int(labels.shape[0]))
    self.values, self.offsets = pixels.values, tf.cast(pixels.row_splits, tf.int64)
    self.shapes, self.labels = shapes, labels
    self.num_bytes = int(self.values.shape[0])

  def image(self, r):
    start, end = self.offsets[r], self.offsets[r + 1]
    return tf.reshape(self.values[start:end], tf.concat([self.shapes[r], [3]], 0))


def _epochs(n, seed, start_index):
  """(global index, record number) from `start_index` on: a new seeded permutation of the n records per epoch."""
  seed = tf.constant(seed, tf.int64)

  def epoch(e):
    # Seeds (seed, -1 - e) never collide with the per-element seeds (seed, i >= 0).
    perm = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([seed, -1 - e])))
    return tf.data.Dataset.from_tensor_slices((e * n + tf.range(n, dtype=tf.int64), perm))

  first_epoch = start_index // n
  return tf.data.Dataset.range(first_epoch, tf.int64.max).flat_map(epoch).skip(start_index - first_epoch * n)


def _indexed_records_in_memory(split, seed, start_index):
  """(global index, serialized record) from `start_index` on: exact per-epoch permutations."""
  all_records = tf.data.TFRecordDataset(split.filenames).batch(1 << 30).get_single_element()
  n = int(all_records.shape[0])
  _check_count(split, n)
  return _epochs(n, seed, start_index), lambda i, r: (i, tf.gather(all_records, r))


def _indexed_records_streaming(split, seed, start_index):
  """(global index, serialized record) from `start_index` on: interleaved shards + seeded shuffle buffer."""
  files = tf.data.Dataset.from_tensor_slices(split.filenames)
  ds = files.interleave(tf.data.TFRecordDataset, cycle_length=min(_CYCLE_LENGTH, len(split.filenames)),
                        block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.repeat().shuffle(min(SHUFFLE_BUFFER, split.num_samples), seed=seed, reshuffle_each_iteration=True)
  return ds.enumerate().skip(start_index), lambda i, r: (i, r)


def train_dataset(split, *, batch_size, image_size, preprocessing_name, seed, start_index=0, augment="none",
                  random_erasing=0.0, color_distortion="fast", random_flip=True,
                  crop_area_range=preprocessing.DEFAULT_CROP_AREA_RANGE, input_context=None, streaming=None,
                  decoded_cache_bytes=0):
  """Infinite (images float32 [B, H, W, 3], labels int32 [B]); B = per-pipeline batch_size. See module doc.

  `color_distortion`, `random_flip`, `crop_area_range`: preprocessing.preprocess_train's.
  `streaming`: read the shards inside the pipeline instead of holding the records in memory
  (default: by size; forced for the tf.data service, whose workers read the files themselves).
  `decoded_cache_bytes`: when the split decodes to at most this many bytes, decode every image
  once (DecodedCache) and augment the cached pixels: no JPEG decoding per step.
  """
  crop_area_range = tuple(crop_area_range)
  _check_common(split, batch_size, image_size, preprocessing_name, color_distortion, crop_area_range)
  if start_index < 0:
    raise ValueError(f"start_index={start_index} must be >= 0.")
  if not 0.0 <= random_erasing <= 1.0:
    raise ValueError(f"random_erasing={random_erasing} is a probability: use a value in [0, 1].")
  augment_fn = _augment_fn(augment)
  eraser = None
  if random_erasing > 0:
    from official.vision.ops import augment as augment_ops  # pylint: disable=g-import-not-at-top
    eraser = augment_ops.RandomErasing(probability=random_erasing)
  num_pipelines, pipeline_id = _pipelines(input_context)

  if streaming is None:
    streaming = _split_bytes(split) > IN_MEMORY_LIMIT_BYTES
  cache = None
  if not streaming and decoded_cache_bytes and decoded_bytes(split) <= decoded_cache_bytes:
    cache = DecodedCache(split)
    ds = _epochs(cache.labels.shape[0], seed, start_index)
  elif not streaming:
    ds, lookup = _indexed_records_in_memory(split, seed, start_index)
  else:
    ds, lookup = _indexed_records_streaming(split, seed, start_index)
  if num_pipelines > 1:
    ds = ds.filter(lambda i, _: i % num_pipelines == pipeline_id)
  seed_t = tf.constant(seed, tf.int64)
  options = dict(augment_fn=augment_fn, color_distortion=color_distortion, random_flip=random_flip,
                 area_range=crop_area_range)

  def make_example(index, record):
    seed_i = tf.stack([seed_t, index])
    if cache is not None:
      image = preprocessing.preprocess_train_image(cache.image(record), image_size, preprocessing_name, seed_i,
                                                   **options)
      label = cache.labels[record]
    else:
      index, serialized = lookup(index, record)  # inside the parallel map: the serial part stays tiny
      image_bytes, label = _parse(serialized)
      image = preprocessing.preprocess_train(image_bytes, image_size, preprocessing_name, seed_i, **options)
    if eraser is not None:
      image = eraser.distort(image)
    return image, label

  ds = ds.map(make_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options())


def eval_dataset(split, *, batch_size, image_size, preprocessing_name, input_context=None, with_filenames=False):
  """{"image", "label", "mask"} batches in file order, padded with mask=0 examples (see module doc).

  The padded split has a multiple of batch_size * num_input_pipelines examples, so every
  pipeline gets the same number of full batches and every real example appears once.
  `with_filenames` adds "filename" (the source file's base name; b"" for padding): for
  printing predictions, not for distributed evaluation (strings cannot go to a GPU).
  """
  _check_common(split, batch_size, image_size, preprocessing_name)
  num_pipelines, pipeline_id = _pipelines(input_context)
  per_round = batch_size * num_pipelines
  padded = math.ceil(split.num_samples / per_round) * per_round
  real = tf.data.TFRecordDataset(split.filenames).map(lambda r: (r, tf.constant(1, tf.int32)))
  padding = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(0, tf.int32))).repeat(
      padded - split.num_samples)
  ds = real.take(split.num_samples).concatenate(padding)
  if num_pipelines > 1:
    ds = ds.enumerate().filter(lambda i, _: i % num_pipelines == pipeline_id).map(lambda _, x: x)

  def make_example(serialized, mask):
    def decode():
      image_bytes, label = _parse(serialized)
      return preprocessing.preprocess_eval(image_bytes, image_size, preprocessing_name), label

    def pad():
      return tf.zeros([image_size, image_size, 3], tf.float32), tf.constant(0, tf.int32)

    image, label = tf.cond(mask > 0, decode, pad)
    image.set_shape([image_size, image_size, 3])
    example = {"image": image, "label": label, "mask": mask}
    if with_filenames:
      example["filename"] = records.parse_example(serialized, keys=("image/filename",))["image/filename"]
    return example

  ds = ds.map(make_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return ds.with_options(_options())


def _options():
  options = tf.data.Options()
  options.deterministic = True
  return options
