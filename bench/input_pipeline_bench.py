"""Input pipeline and conversion throughput, each against a baseline measured in the same run.

    python bench/input_pipeline_bench.py --dataset_dir=/tmp/bench_synthetic --num_images=2500
    # prints: conversion with 2 workers against 1 (target >= 1.6x) and against single-core JPEG decode,
    # the training reader (crop + flip + resize + the default "fast" colour distortion) vs plain
    # tf.io.decode_jpeg + resize of the same records, per core; target: reader >= 0.8 x decode-only.

Conversion: `datasets.convert(..., overwrite=True)` on synthetic_flowers (images generated
once, not timed) with --num_workers=1 and 2, alternated, pool start-up included; also against
decoding the same files on one core in this process.
Reader: `input_pipeline.train_dataset` (the very pipeline training uses) and a decode+resize
pipeline over the same in-memory records, both on a private thread pool of --threads threads
(default 1: per-core figures), after --warmup_batches.
"""
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position
from slimflowers.data import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from slimflowers.data import preprocessing  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset_dir", "/tmp/slimflowers_bench/synthetic_flowers", "Where synthetic_flowers goes.")
flags.DEFINE_integer("num_images", 2500, "Synthetic images to generate for the benchmark.")
flags.DEFINE_integer("conversion_workers", 2, "Conversion: --num_workers timed against 1 worker.")
flags.DEFINE_integer("conversion_repeats", 3, "Conversion: alternated runs per --num_workers (best kept).")
flags.DEFINE_integer("script_repeats", 0, "Conversion: also time download_and_convert_data.py as a fresh process, "
                     "this many alternated runs per --num_workers (0: skip).")
flags.DEFINE_integer("image_size", 224, "Output image size of the readers.")
flags.DEFINE_integer("batch_size", 32, "Batch size of the readers.")
flags.DEFINE_integer("num_batches", 40, "Timed batches per reader.")
flags.DEFINE_integer("warmup_batches", 5, "Untimed batches first (tracing, buffers).")
flags.DEFINE_integer("threads", 1, "tf.data private thread pool size (1 = per-core figures).")
flags.DEFINE_string("preprocessing", "inception", "Training preprocessing to time.")
flags.DEFINE_enum("color_distortion", "fast", preprocessing.COLOR_DISTORTIONS,
                  "Inception colour distortion to time (fast: the training default).")
flags.DEFINE_bool("skip_conversion", False, "Only time the readers.")
flags.DEFINE_bool("skip_reader", False, "Only time the conversion.")


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


def _convert(num_workers):
  start = time.perf_counter()
  meta = datasets.convert("synthetic_flowers", FLAGS.dataset_dir, num_images=FLAGS.num_images, overwrite=True,
                          num_workers=num_workers)
  return time.perf_counter() - start, meta


def _convert_script(num_workers):
  start = time.perf_counter()
  subprocess.run([sys.executable, os.path.join(ROOT, "download_and_convert_data.py"),
                  "--dataset_name=synthetic_flowers", f"--dataset_dir={FLAGS.dataset_dir}",
                  f"--num_images={FLAGS.num_images}", "--overwrite", f"--num_workers={num_workers}"],
                 check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
  return time.perf_counter() - start


def bench_conversion():
  meta = datasets.convert("synthetic_flowers", FLAGS.dataset_dir, num_images=FLAGS.num_images)  # generates once
  n = sum(s["num_samples"] for s in meta["splits"].values())
  workers = (1, FLAGS.conversion_workers)
  walls, inside = {w: [] for w in workers}, {w: [] for w in workers}
  for _ in range(FLAGS.conversion_repeats):  # alternate, so a noisy neighbour hurts both alike
    for w in workers:
      wall, meta = _convert(w)
      walls[w].append(wall)
      inside[w].append(meta["conversion_images_per_sec"])
  one, many = min(walls[1]), min(walls[workers[1]])
  print(f"conversion of {n} images, datasets.convert(overwrite=True) in this process, pool start-up included, "
        f"best of {FLAGS.conversion_repeats} alternated runs:")
  for w in workers:
    print(f"  --num_workers={w}: {min(walls[w]):.2f} s = {n / min(walls[w]):.0f} images/s "
          f"(runs: {', '.join(f'{t:.2f}' for t in walls[w])} s; inside the pool {max(inside[w]):.0f} images/s)")
  met = "met" if one / many >= 1.6 else "NOT met"
  print(f"  {workers[1]} workers / 1 worker = {one / many:.2f}x (target >= 1.6: {met})")
  if FLAGS.script_repeats:
    scripts = {w: [] for w in workers}
    for _ in range(FLAGS.script_repeats):
      for w in workers:
        scripts[w].append(_convert_script(w))
    one_s, many_s = min(scripts[1]), min(scripts[workers[1]])
    print(f"  download_and_convert_data.py end to end (a fresh process: Python and TensorFlow start-up too), best "
          f"of {FLAGS.script_repeats}: 1 worker {one_s:.2f} s, {workers[1]} workers {many_s:.2f} s = "
          f"{one_s / many_s:.2f}x")
  root = os.path.join(FLAGS.dataset_dir, "flower_photos")
  files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".jpg")]
  start = time.perf_counter()
  for path in files:
    tf.io.decode_jpeg(tf.io.read_file(path))
  decode_rate = len(files) / (time.perf_counter() - start)
  print(f"  baseline, same run: read + tf.io.decode_jpeg on 1 core {decode_rate:.0f} images/s -> 1 worker / baseline "
        f"= {n / one / decode_rate:.2f}, {workers[1]} workers / baseline = {n / many / decode_rate:.2f}")


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
  if not FLAGS.skip_reader:
    bench_reader()


if __name__ == "__main__":
  app.run(main)
