"""Input pipeline and conversion throughput, each against a baseline measured in the same run.

    python bench/input_pipeline_bench.py --dataset_dir=/tmp/bench_synthetic --num_images=1000
    # prints: conversion images/s vs single-core JPEG decode, and the training reader
    # (crop + flip + resize + the default "fast" colour distortion) vs plain tf.io.decode_jpeg + resize of the same records,
    # per core; target: reader >= 0.8 x decode-only.

Conversion: `datasets.convert(..., overwrite=True)` on synthetic_flowers (images generated
once, not timed), all cores; baseline: decoding the same files on one core in this process.
Reader: `input_pipeline.train_dataset` (the very pipeline training uses) and a decode+resize
pipeline over the same in-memory records, both on a private thread pool of --threads threads
(default 1: per-core figures), after --warmup_batches.
"""
import os
import sys
import time

from absl import app
from absl import flags
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position
from slimflowers.data import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from slimflowers.data import preprocessing  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset_dir", "/tmp/slimflowers_bench/synthetic_flowers", "Where synthetic_flowers goes.")
flags.DEFINE_integer("num_images", 1000, "Synthetic images to generate for the benchmark.")
flags.DEFINE_integer("image_size", 224, "Output image size of the readers.")
flags.DEFINE_integer("batch_size", 32, "Batch size of the readers.")
flags.DEFINE_integer("num_batches", 40, "Timed batches per reader.")
flags.DEFINE_integer("warmup_batches", 5, "Untimed batches first (tracing, buffers).")
flags.DEFINE_integer("threads", 1, "tf.data private thread pool size (1 = per-core figures).")
flags.DEFINE_string("preprocessing", "inception", "Training preprocessing to time.")
flags.DEFINE_enum("color_distortion", "fast", preprocessing.COLOR_DISTORTIONS,
                  "Inception colour distortion to time (fast: the training default).")
flags.DEFINE_bool("skip_conversion", False, "Only time the readers.")


def _rate(ds, num_batches, warmup, batch_size):
  it = iter(ds)
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  return num_batches * batch_size / (time.perf_counter() - start)


def _threaded(ds):
  options = tf.data.Options()
  options.threading.private_threadpool_size = FLAGS.threads
  options.threading.max_intra_op_parallelism = 1
  return ds.with_options(options)


def bench_conversion():
  meta = datasets.convert("synthetic_flowers", FLAGS.dataset_dir, num_images=FLAGS.num_images)  # generates once
  start = time.perf_counter()
  meta = datasets.convert("synthetic_flowers", FLAGS.dataset_dir, num_images=FLAGS.num_images, overwrite=True)
  wall = time.perf_counter() - start
  n = sum(s["num_samples"] for s in meta["splits"].values())
  root = os.path.join(FLAGS.dataset_dir, "flower_photos")
  files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg")]
  start = time.perf_counter()
  for path in files:
    tf.io.decode_jpeg(tf.io.read_file(path))
  decode_rate = len(files) / (time.perf_counter() - start)
  print(f"conversion: {n} images in {wall:.1f} s wall (incl. worker start-up) = {n / wall:.0f} images/s; "
        f"inside the pool {meta['conversion_images_per_sec']:.0f} images/s on {os.cpu_count()} core(s)")
  print(f"  baseline, same run: read + tf.io.decode_jpeg on 1 core {decode_rate:.0f} images/s -> conversion "
        f"(pool) / baseline = {meta['conversion_images_per_sec'] / decode_rate:.2f}")


def bench_reader():
  split = datasets.get_split("synthetic_flowers", "train", FLAGS.dataset_dir)
  size, batch = FLAGS.image_size, FLAGS.batch_size
  train = _threaded(input_pipeline.train_dataset(split, batch_size=batch, image_size=size,
                                                 preprocessing_name=FLAGS.preprocessing, seed=0,
                                                 color_distortion=FLAGS.color_distortion))
  records = tf.data.TFRecordDataset(split.filenames).batch(1 << 30).get_single_element()

  def decode_resize(serialized):
    image_bytes, label = input_pipeline._parse(serialized)  # pylint: disable=protected-access
    image = tf.image.resize(tf.io.decode_jpeg(image_bytes, channels=3), [size, size])
    return image, label

  baseline = _threaded(tf.data.Dataset.from_tensor_slices(records).repeat()
                       .map(decode_resize, num_parallel_calls=tf.data.AUTOTUNE).batch(batch, drop_remainder=True)
                       .prefetch(tf.data.AUTOTUNE))
  cached = _threaded(input_pipeline.train_dataset(split, batch_size=batch, image_size=size,
                                                  preprocessing_name=FLAGS.preprocessing, seed=0,
                                                  color_distortion=FLAGS.color_distortion,
                                                  decoded_cache_bytes=input_pipeline.decoded_bytes(split)))
  rates = {}
  for _ in range(2):  # alternate, so a noisy neighbour hurts both alike
    for name, ds in (("decode+resize", baseline), ("train reader", train), ("cached reader", cached)):
      rates.setdefault(name, []).append(_rate(ds, FLAGS.num_batches, FLAGS.warmup_batches, batch))
  best = {k: max(v) for k, v in rates.items()}
  ratio = best["train reader"] / best["decode+resize"]
  print(f"reader ({FLAGS.threads} thread(s), {size}px, batch {batch}, {split.num_samples} records of "
        f"~160-400 px):")
  print(f"  baseline tf.io.decode_jpeg + resize: {best['decode+resize']:.0f} images/s")
  print(f"  train reader ({FLAGS.preprocessing}: crop via decode_and_crop_jpeg + flip + resize + "
        f"{FLAGS.color_distortion} colour distortion): "
        f"{best['train reader']:.0f} images/s")
  print(f"  ratio train/baseline = {ratio:.2f} (target >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})")
  print(f"  train reader with the decoded-image cache (--decoded_cache_mb; the split decoded once, "
        f"{input_pipeline.decoded_bytes(split) / 2**20:.0f} MiB): {best['cached reader']:.0f} images/s = "
        f"{best['cached reader'] / best['decode+resize']:.2f} x baseline, "
        f"{best['cached reader'] / best['train reader']:.2f} x the JPEG reader")


def main(argv):
  del argv
  if not FLAGS.skip_conversion:
    bench_conversion()
  elif datasets.records.read_metadata(FLAGS.dataset_dir) is None:
    datasets.convert("synthetic_flowers", FLAGS.dataset_dir, num_images=FLAGS.num_images)
  bench_reader()


if __name__ == "__main__":
  app.run(main)
