"""Downloads (when needed) and converts a flower dataset, or your own photos, to TFRecord shards.

    python download_and_convert_data.py --dataset_name=synthetic_flowers --dataset_dir=/tmp/synthetic_flowers
    # -> /tmp/synthetic_flowers/synthetic_flowers_{train,validation}_*.tfrecord, labels.txt, dataset.json
    # synthetic_flowers: 5 classes; train 2000, validation 500; 0 skipped -> /tmp/synthetic_flowers

    python download_and_convert_data.py --dataset_name=flowers --dataset_dir=/tmp/flowers --test_size=350
    python download_and_convert_data.py --dataset_name=flowers102 --dataset_dir=/tmp/flowers102
    python download_and_convert_data.py --dataset_name=folder --source=~/photos --dataset_dir=/tmp/photos

Upstream files already in --dataset_dir (or --source) are used after a checksum check;
otherwise they are downloaded. A re-run after success is a no-op unless --overwrite (or a shard
changed since it was written: then it converts again). --verify reads every record and names the
shards that do not read.
Flags left unset take the dataset's defaults (see the datasets/<name>.py module).
Your --source folder is only read, never changed; files that are not usable images
are skipped and listed in dataset.json.
"""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

import datasets
from datasets import images
from datasets import records

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset_name", None, datasets.list_datasets(), "Which dataset to convert.")
flags.DEFINE_string("dataset_dir", None, "Output directory for the shards, "
                    f"{records.LABELS_FILENAME} and {records.DATASET_JSON}.")
flags.DEFINE_string("source", None, "Directory (or archive) with the upstream files, or the class folders for "
                    "--dataset_name=folder; for synthetic_flowers where the generated images go.")
flags.DEFINE_float("validation_size", None, "Validation images: a count, or a fraction in (0, 1). "
                   "flowers/folder/synthetic_flowers only.")
flags.DEFINE_float("test_size", None, "Test images: a count, or a fraction in (0, 1). flowers/folder/synthetic_flowers "
                   "only.")
flags.DEFINE_integer("split_index", None, "flowers17: which of the 3 official splits (1, 2 or 3; default 1).")
flags.DEFINE_integer("num_shards", None, "Shards per split (default: one per 256 images).")
flags.DEFINE_integer("seed", None, "Shuffle seed of the split (default 0, as TF-Slim); synthetic_flowers: also the "
                     "generator seed.")
flags.DEFINE_integer("num_images", None, "synthetic_flowers: how many images to generate (default 2500).")
flags.DEFINE_integer("max_image_side", images.DEFAULT_MAX_IMAGE_SIDE,
                     "Images with a longer side are downsized to it on conversion (memory stays bounded, and every "
                     "record decodes in training).")
flags.DEFINE_integer("resize_to", None, "Store images with the shorter side at most this many px (JPEG quality "
                     f"{images.JPEG_QUALITY}): faster training at small image sizes. Default: keep the sizes.")
flags.DEFINE_integer("num_workers", None, "Worker processes (default: all cores).")
flags.DEFINE_bool("overwrite", False, "Convert again even when --dataset_dir already holds a complete conversion "
                  "(the previous conversion's own files are replaced; nothing else is touched).")
flags.DEFINE_bool("verify", False, "Convert nothing: read every record of every shard of --dataset_dir and report "
                  "the shards that are missing, truncated or corrupted (exit 2) or that all read (exit 0).")
flags.mark_flags_as_required(["dataset_name", "dataset_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All options are --flags.")
  if FLAGS.verify:
    counts = datasets.verify(FLAGS.dataset_name, FLAGS.dataset_dir)
    logging.info("%s: every record of every shard reads (%s).", FLAGS.dataset_dir,
                 ", ".join(f"{split} {n}" for split, n in counts.items()))
    return
  meta = datasets.convert(
      FLAGS.dataset_name, FLAGS.dataset_dir, source=FLAGS.source, num_shards=FLAGS.num_shards,
      num_workers=FLAGS.num_workers, overwrite=FLAGS.overwrite, validation_size=FLAGS.validation_size,
      test_size=FLAGS.test_size, split_index=FLAGS.split_index, seed=FLAGS.seed, num_images=FLAGS.num_images,
      max_image_side=FLAGS.max_image_side, resize_to=FLAGS.resize_to)
  sizes = ", ".join(f"{s} {m['num_samples']}" for s, m in sorted(meta["splits"].items()))
  changed = len(meta.get("changed", []))
  logging.info("%s: %d classes; %s; %d skipped, %d changed (rotated/downsized) -> %s", meta["name"],
               meta["num_classes"], sizes, meta["num_skipped"], changed, FLAGS.dataset_dir)


if __name__ == "__main__":
  cli.run(main)
