"""Peak memory (RSS) of each program on inputs that could make it grow, and whether it grows.

    .venv/bin/python bench/memory_bench.py                          # all parts, ~15 min on 2 idle cores
    .venv/bin/python bench/memory_bench.py --parts=predict,cache    # some of them

Each program runs as a fresh process; its resident memory (the process and its children, summed) is
sampled every --sample_secs with psutil, and the peak is reported. RSS does not depend on machine
load, so these figures hold on a busy machine too. Parts (--parts):

- trainer: train_image_classifier.py with the demo's recipe (slimflowers/demo.py: mobilenet_v1_050,
  64 px, batch 32, images stored at 128 px, the decoded-image cache, PreciseBN before every
  checkpoint) for --train_steps steps; RSS at every logged step, so growth with steps shows.
- converter: download_and_convert_data.py --num_workers=2 on --big_photos JPEGs of 6000x4000 px
  (24 megapixels, generated), against 1 worker.
- evaluator: eval_image_classifier.py on a --eval_examples-image split (flowers102's test split
  has 6,149) at 299 px; the images are small on disk (they are generated), the evaluation is at 299.
- predict: predict_image_classifier.py on --predict_counts files (1,000, 5,000, 10,000): memory must
  stay flat as the count grows (the predictions themselves are a few hundred bytes per file).
- cache: the decoded-image cache (--decoded_cache_mb) built for a training split: the memory it
  takes against the decoded size it is allowed (target: within 10 %).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags
from datasets import records  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/slimflowers_bench/memory", "Where generated data and runs go (kept, reused).")
flags.DEFINE_list("parts", ["trainer", "converter", "evaluator", "predict", "cache"], "What to measure.")
flags.DEFINE_integer("train_steps", 600, "trainer: steps of the demo's recipe (checkpoints every 200).")
flags.DEFINE_integer("big_photos", 6, "converter: 24-megapixel photos to generate.")
flags.DEFINE_integer("eval_examples", 6149, "evaluator: images in the evaluated split.")
flags.DEFINE_list("predict_counts", ["1000", "5000", "10000"], "predict: file counts.")
flags.DEFINE_float("sample_secs", 0.02, "RSS sampling period.")
MB = 2**20
STEP_LINE = re.compile(r"step (\d+)/(\d+)")


def _tree_rss(proc):
  total = 0
  for p in [proc] + proc.children(recursive=True):
    try:
      total += p.memory_info().rss
    except psutil.Error:
      pass
  return total


def run_measured(cmd, *, marks=None):
  """Runs `cmd`; returns (peak RSS bytes, {mark: RSS when a line matching `marks` was printed}, output).

  `marks`: a compiled regex; the RSS of the process tree is recorded under group(1) of each matching line.
  """
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
  watched = psutil.Process(proc.pid)
  peak, seen, lines, done = [0], {}, [], threading.Event()

  def sample():
    while not done.is_set():
      try:
        peak[0] = max(peak[0], _tree_rss(watched))
      except psutil.Error:
        break
      time.sleep(FLAGS.sample_secs)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  for line in proc.stdout:
    lines.append(line)
    m = marks.search(line) if marks else None
    if m:
      try:
        seen[m.group(1)] = _tree_rss(watched)
      except psutil.Error:
        pass
  proc.wait()
  done.set()
  sampler.join()
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(lines[-30:])}")
  return peak[0], seen, "".join(lines)


def _script(name, *args):
  return [sys.executable, os.path.join(ROOT, name), *args]


def _write_jpegs(root, count, size, per_dir=None, classes=2, seed=0):
  """`count` JPEGs of `size` (h, w) under root/class_k/ (root/part_NN/class_k/ with per_dir), made once."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  marker = os.path.join(root, ".complete")
  if os.path.exists(marker):
    return root
  shutil.rmtree(root, ignore_errors=True)
  rng = np.random.default_rng(seed)
  h, w = size
  base = [Image.fromarray((rng.random((8, 12, 3)) * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
          for _ in range(4)]
  for i in range(count):
    folder = os.path.join(root, f"part_{i // per_dir:02d}" if per_dir else "", f"class_{i % classes}")
    os.makedirs(folder, exist_ok=True)
    image = base[i % len(base)]
    if i >= len(base):  # different bytes per file, cheaply
      image = image.rotate(0, translate=(i % 7, i % 5))
    image.save(os.path.join(folder, f"img_{i:05d}.jpg"), "JPEG", quality=90)
  open(marker, "w").close()
  return root


def _convert_folder(source, out, *extra):
  if not os.path.exists(os.path.join(out, records.DATASET_JSON)):
    subprocess.run(_script("download_and_convert_data.py", "--dataset_name=folder", f"--source={source}",
                           f"--dataset_dir={out}", *extra), check=True, cwd=ROOT, capture_output=True)
  return out


def _demo_data():
  from slimflowers.study import demo  # pylint: disable=g-import-not-at-top
  out = os.path.join(FLAGS.work_dir, "synthetic_flowers")
  if not os.path.exists(os.path.join(out, records.DATASET_JSON)):
    subprocess.run(_script("download_and_convert_data.py", "--dataset_name=synthetic_flowers",
                           f"--dataset_dir={out}", f"--num_images={demo.NUM_IMAGES}", f"--test_size={demo.TEST_SIZE}",
                           f"--resize_to={demo.RESIZE_TO}"), check=True, cwd=ROOT, capture_output=True)
  return out


def _tiny_checkpoint(dataset_dir, name, size, model="mobilenet_v1_025"):
  train_dir = os.path.join(FLAGS.work_dir, name)
  if not os.path.exists(os.path.join(train_dir, "checkpoint")):
    shutil.rmtree(train_dir, ignore_errors=True)
    subprocess.run(_script("train_image_classifier.py", f"--train_dir={train_dir}", "--dataset_name=folder",
                           f"--dataset_dir={dataset_dir}", f"--model_name={model}", f"--train_image_size={size}",
                           "--batch_size=8", "--max_number_of_steps=2", "--precise_bn_batches=1"),
                   check=True, cwd=ROOT, capture_output=True)
  return train_dir


def part_trainer():
  from slimflowers.study import demo  # pylint: disable=g-import-not-at-top
  data = _demo_data()
  train_dir = os.path.join(FLAGS.work_dir, "train_demo")
  shutil.rmtree(train_dir, ignore_errors=True)
  flags_ = [f for f in demo.train_flags() if not f.startswith("--max_number_of_steps")]
  peak, at_step, _ = run_measured(
      _script("train_image_classifier.py", f"--train_dir={train_dir}", "--dataset_name=synthetic_flowers",
              f"--dataset_dir={data}", "--model_name=mobilenet_v1_050", *flags_,
              f"--max_number_of_steps={FLAGS.train_steps}"), marks=STEP_LINE)
  steps = sorted(at_step, key=int)
  print(f"trainer (demo recipe, mobilenet_v1_050, {FLAGS.train_steps} steps): peak {peak / MB:.0f} MiB; RSS at "
        f"step " + ", ".join(f"{s}: {at_step[s] / MB:.0f}" for s in steps) + " MiB", flush=True)
  if len(steps) >= 3:
    mid, last = at_step[steps[len(steps) // 2]], at_step[steps[-1]]
    print(f"  growth from step {steps[len(steps) // 2]} to {steps[-1]}: {(last - mid) / MB:+.0f} MiB", flush=True)
  return {"trainer_peak_mib": peak / MB, "trainer_rss_by_step_mib": {s: at_step[s] / MB for s in steps}}


def part_converter():
  photos = _write_jpegs(os.path.join(FLAGS.work_dir, "photos_24mp"), FLAGS.big_photos, (4000, 6000))
  out = {}
  for workers in (1, 2):
    target = os.path.join(FLAGS.work_dir, f"converted_24mp_{workers}")
    shutil.rmtree(target, ignore_errors=True)
    peak, _, _ = run_measured(_script("download_and_convert_data.py", "--dataset_name=folder", f"--source={photos}",
                                      f"--dataset_dir={target}", "--validation_size=0", f"--num_workers={workers}",
                                      "--num_shards=2"))  # two shards: two photos at once with 2 workers
    out[workers] = peak / MB
    print(f"converter, {FLAGS.big_photos} photos of 6000x4000 px (24 Mpx), --num_workers={workers}: peak "
          f"{peak / MB:.0f} MiB", flush=True)
  return {"converter_peak_mib": out}


def part_evaluator():
  n = FLAGS.eval_examples
  photos = _write_jpegs(os.path.join(FLAGS.work_dir, f"photos_eval_{n}"), n + 16, (48, 64))
  data = _convert_folder(photos, os.path.join(FLAGS.work_dir, f"converted_eval_{n}"), f"--validation_size={n}")
  train_dir = _tiny_checkpoint(data, "train_eval", 299)
  eval_dir = os.path.join(FLAGS.work_dir, "eval_299")
  shutil.rmtree(eval_dir, ignore_errors=True)
  peak, _, output = run_measured(_script("eval_image_classifier.py", f"--checkpoint_path={train_dir}",
                                         "--dataset_name=folder", f"--dataset_dir={data}", f"--eval_dir={eval_dir}",
                                         "--eval_image_size=299", "--batch_size=100"))
  counted = re.search(r"num_examples=(\d+)", output)
  print(f"evaluator, {counted.group(1) if counted else '?'} images at 299 px (mobilenet_v1_025, batch 100): peak "
        f"{peak / MB:.0f} MiB", flush=True)
  return {"evaluator_peak_mib": peak / MB}


def part_predict():
  counts = [int(c) for c in FLAGS.predict_counts]
  per_dir = 1000
  photos = _write_jpegs(os.path.join(FLAGS.work_dir, "photos_predict"), max(counts), (48, 64), per_dir=per_dir)
  data = _convert_folder(os.path.join(photos, "part_00"), os.path.join(FLAGS.work_dir, "converted_predict"),
                         "--validation_size=0.2")
  train_dir = _tiny_checkpoint(data, "train_predict", 64)
  peaks = {}
  for n in counts:
    dirs = [os.path.join(photos, f"part_{i:02d}") for i in range(-(-n // per_dir))]
    output = os.path.join(FLAGS.work_dir, f"predictions_{n}.csv")
    peak, _, _ = run_measured(_script("predict_image_classifier.py", f"--model={train_dir}", f"--output={output}",
                                      "--overwrite", *dirs))
    peaks[n] = peak / MB
    print(f"predict, {n:,} files (mobilenet_v1_025, 64 px, checkpoint): peak {peak / MB:.0f} MiB", flush=True)
  first, last = counts[0], counts[-1]
  print(f"  growth from {first:,} to {last:,} files: {peaks[last] - peaks[first]:+.0f} MiB "
        f"({(peaks[last] - peaks[first]) * 1024 / (last - first):+.1f} KiB per file)", flush=True)
  return {"predict_peak_mib": peaks}


CACHE_PROBE = r"""
import json, resource, sys
import psutil
sys.path.insert(0, {root!r})
import tensorflow as tf
import datasets
from slimflowers.data import input_pipeline
split = datasets.get_split("synthetic_flowers", "train", {data!r})
decoded = input_pipeline.decoded_bytes(split)
warm = tf.data.Dataset.range(64).map(lambda i: tf.io.decode_jpeg(tf.io.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8))),
                                    num_parallel_calls=tf.data.AUTOTUNE)
sum(1 for _ in warm)  # the kernels and tf.data's threads, before the baseline
rss = lambda: psutil.Process().memory_info().rss
before = rss()
if {mode!r} == "cache alone":
  cache = input_pipeline.DecodedCache(split)
else:
  ds = input_pipeline.train_dataset(split, batch_size=32, image_size=64, preprocessing_name="inception", seed=0,
                                    decoded_cache_bytes=decoded if {mode!r} == "cache" else 0)
  it = iter(ds)
  for _ in range(50):
    next(it)
after = rss()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"decoded": decoded, "records": sum(tf.io.gfile.stat(f).length for f in split.filenames),
                  "held": after - before, "peak": peak - before}}))
"""


def part_cache():
  data = _demo_data()
  r = {}
  for mode in ("cache alone", "cache", "no cache"):
    probe = CACHE_PROBE.format(root=ROOT, data=data, mode=mode)
    result = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, cwd=ROOT)
    r[mode] = json.loads(result.stdout.strip().splitlines()[-1])
  decoded, records = r["cache"]["decoded"] / MB, r["cache"]["records"] / MB
  alone, alone_peak = r["cache alone"]["held"] / MB, r["cache alone"]["peak"] / MB
  # The JPEG reader holds the serialized records in memory instead: what the cache costs is the difference,
  # plus the records it does not hold.
  cost = (r["cache"]["held"] - r["no cache"]["held"]) / MB + records
  print(f"decoded-image cache of the demo's training split ({decoded:.0f} MiB decoded, what --decoded_cache_mb is "
        f"compared with): built alone, held {alone:.0f} MiB ({alone / decoded:.2f}x), peak {alone_peak:.0f} MiB "
        f"({alone_peak / decoded:.2f}x); in the training pipeline (50 batches), against the JPEG reader that holds "
        f"the {records:.0f} MiB of records instead: {cost:.0f} MiB ({cost / decoded:.2f}x); target <= 1.10x",
        flush=True)
  return {"cache_decoded_mib": decoded, "cache_alone_mib": alone, "cache_alone_peak_mib": alone_peak,
          "cache_in_pipeline_mib": cost}


def main(argv):
  del argv
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
  print(f"memory bench at {commit.strip()}, {time.strftime('%Y-%m-%d')}", flush=True)
  results = {}
  for part in FLAGS.parts:
    results.update(globals()[f"part_{part}"]())
  with open(os.path.join(FLAGS.work_dir, "memory.json"), "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
