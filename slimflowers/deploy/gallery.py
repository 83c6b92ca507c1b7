r"""Which photos are wrong, and which labels look wrong: galleries and label_issues.csv from predictions.csv.

    rows = gallery.read_predictions("runs/x/eval_validation/predictions.csv")
    gallery.write_mistakes_summary("runs/x/eval_validation", rows, split, class_names, step=1000,
                                   explainer=gallery.Explainer(model, "cifarnet", 96, "inception"))
    gallery.write_label_issues("runs/x/eval_train", rows, split, class_names)   # label_issues.csv + .png

predictions.csv (one row per evaluated example, written by the evaluator) has the columns
`filename,label,prediction,probability,label_probability,top1,top1_probability,...,topK,topK_probability`:
class ids (names in labels.txt), the probability of the prediction and of the given label.

- Mistakes: the most confident wrong predictions, at most 8 per true class and 64 in all, most confident
  first; a labelled grid (image or its Grad-CAM overlay for the predicted class, file name, true and
  predicted class, probability) as the TensorBoard image summary `mistakes` in the eval directory.
- Possible label errors (the simple ranking confident learning compares against, SOURCES.md §9): every
  example ranked by the probability the model gives its label, lowest first, with the predicted class
  beside it: `label_issues.csv`, and the first 64 as `label_issues.png` (and the summary `label_issues`).
  A photo filed in the wrong folder is the commonest cause of a plateau on one's own photos.
"""
import csv
import io
import os

import numpy as np

from slimflowers.core import errors
from slimflowers.core import fileio

MISTAKES_PER_CLASS, MISTAKES_TOTAL = 8, 64
GALLERY_SIZE = 64
COLUMNS = 8
LABEL_ISSUES_CSV, LABEL_ISSUES_PNG = "label_issues.csv", "label_issues.png"
MISTAKES_PNG = "mistakes.png"  # the same grid as the summary, for the study's report
_FIXED = ("filename", "label", "prediction", "probability", "label_probability")


def read_predictions(path):
  """The rows of a predictions.csv as dicts (ids int, probabilities float, "top": [(id, p)]); a file that is not
  in the contract's format is a one-line error."""
  text = fileio.read_text(path)
  reader = csv.reader(io.StringIO(text))
  header = next(reader, None)
  k = (len(header) - len(_FIXED)) // 2 if header else 0
  expected = list(_FIXED) + [c for i in range(1, k + 1) for c in (f"top{i}", f"top{i}_probability")]
  if not header or k < 1 or header != expected:
    raise errors.BadValue(f"{path} is not an evaluator predictions.csv (its header should be "
                          f"{','.join(expected[:7])},...); re-run the evaluation to write it.")
  rows = []
  for n, cells in enumerate(reader, start=2):
    if not cells:
      continue
    try:
      rows.append({"filename": cells[0], "label": int(cells[1]), "prediction": int(cells[2]),
                   "probability": float(cells[3]), "label_probability": float(cells[4]),
                   "top": [(int(cells[5 + 2 * i]), float(cells[6 + 2 * i])) for i in range(k)]})
    except (ValueError, IndexError) as e:
      raise errors.BadValue(f"{path}, line {n}: {e}; the file is damaged: re-run the evaluation.") from e
  return rows


def most_confident_mistakes(rows, per_class=MISTAKES_PER_CLASS, total=MISTAKES_TOTAL):
  """Wrong predictions, most confident first, at most `per_class` per true class and `total` in all."""
  wrong = sorted((r for r in rows if r["prediction"] != r["label"]), key=lambda r: (-r["probability"], r["filename"]))
  taken, per = [], {}
  for r in wrong:
    if per.get(r["label"], 0) < per_class:
      per[r["label"]] = per.get(r["label"], 0) + 1
      taken.append(r)
      if len(taken) == total:
        break
  return taken


def label_issues(rows):
  """Every row, the least likely given label first (ties: the more confident other prediction first)."""
  return sorted(rows, key=lambda r: (r["label_probability"], -r["probability"], r["filename"]))


def _name(class_names, c):
  return class_names[c] if 0 <= c < len(class_names) else str(c)


def format_label_issues(rows, class_names):
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["rank", "filename", "label", "label_name", "label_probability", "prediction", "prediction_name",
                   "probability"])
  for rank, r in enumerate(label_issues(rows), start=1):
    writer.writerow([rank, r["filename"], r["label"], _name(class_names, r["label"]), f"{r['label_probability']:.6g}",
                     r["prediction"], _name(class_names, r["prediction"]), f"{r['probability']:.6g}"])
  return out.getvalue()


# ----------------------------------------------------------------------------------------------------------------------
# Images


def encoded_images(split, keys):
  """{(filename, label): encoded image bytes} of the split's records with those keys. Records store base names
  (`image/filename`), which repeat across class folders (img_001.jpg in each): the label tells them apart."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from datasets import records  # pylint: disable=g-import-not-at-top
  wanted, found = set(keys), {}
  ds = tf.data.TFRecordDataset(split.filenames).map(
      lambda r: records.parse_example(r, keys=("image/encoded", "image/filename", "image/class/label")))
  for example in ds.as_numpy_iterator():
    key = (example["image/filename"].decode("utf-8", "replace"), int(example["image/class/label"]))
    if key in wanted and key not in found:
      found[key] = example["image/encoded"]
      if len(found) == len(wanted):
        break
  return found


def _decode(data):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


class Explainer:
  """Grad-CAM overlays of encoded photos for given classes (slimflowers/deploy/gradcam.py), batched."""

  def __init__(self, model, model_name, image_size, preprocessing_name, batch_size=32):
    from slimflowers.deploy import gradcam  # pylint: disable=g-import-not-at-top
    self.gradcam = gradcam.for_model(model, model_name)
    self.image_size, self.preprocessing_name, self.batch_size = image_size, preprocessing_name, batch_size

  def overlays(self, encoded, classes):
    """uint8 [H, W, 3] per photo (its own size): the heatmap for `classes[i]` over photo i."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from slimflowers.deploy import gradcam  # pylint: disable=g-import-not-at-top
    from slimflowers.deploy import serving  # pylint: disable=g-import-not-at-top
    out = []
    for start in range(0, len(encoded), self.batch_size):
      chunk = encoded[start:start + self.batch_size]
      images = tf.stack([serving.preprocess_image_bytes(tf.constant(d), self.image_size, self.preprocessing_name)
                         for d in chunk])
      cams, _, _ = self.gradcam.explain(images, classes[start:start + self.batch_size])
      for data, cam in zip(chunk, cams):
        photo = _decode(data)
        heat = gradcam.to_photo(cam, photo.shape[0], photo.shape[1], self.image_size, self.preprocessing_name)
        out.append(gradcam.overlay(photo, heat))
    return out


def grid(tiles, captions, columns=COLUMNS, tile_inches=1.9, dpi=80):
  """uint8 RGB [H, W, 3]: `tiles` (images of any size) in rows of `columns`, each with its caption lines above it."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  n = max(len(tiles), 1)
  cols = min(columns, n)
  rows = (n + cols - 1) // cols
  fig, axes = plt.subplots(rows, cols, figsize=(cols * tile_inches, rows * (tile_inches + 0.55)), dpi=dpi,
                           squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, tile, caption in zip(axes.flat, tiles, captions):
    ax.imshow(tile)
    ax.set_title(caption, fontsize=7, loc="left")
  if not tiles:
    axes.flat[0].text(0.5, 0.5, "nothing to show", ha="center", va="center")
  fig.tight_layout(pad=0.3)
  fig.canvas.draw()
  pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  plt.close(fig)
  return pixels


def _caption(r, class_names, width=22):
  name = r["filename"] if len(r["filename"]) <= width else "..." + r["filename"][-(width - 3):]
  return (f"{name}\ntrue: {_name(class_names, r['label'])[:width - 6]}\n"
          f"pred: {_name(class_names, r['prediction'])[:width - 12]} {r['probability']:.2f}")


def gallery_image(rows, split, class_names, explainer=None):
  """The labelled grid of `rows` (their photos from the split's records; with an explainer, Grad-CAM overlays
  for the predicted class). Rows whose photo is not in the split are left out."""
  encoded = encoded_images(split, [(r["filename"], r["label"]) for r in rows])
  rows = [r for r in rows if (r["filename"], r["label"]) in encoded]
  data = [encoded[(r["filename"], r["label"])] for r in rows]
  if explainer is not None and rows:
    tiles = explainer.overlays(data, [r["prediction"] for r in rows])
  else:
    tiles = [_decode(d) for d in data]
  return grid(tiles, [_caption(r, class_names) for r in rows])


def write_image_summary(logdir, tag, image, step, description):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    tf.summary.image(tag, image[None], step=step, description=description)
  writer.close()


def write_mistakes_summary(eval_dir, rows, split, class_names, *, step, explainer=None):
  """The `mistakes` image summary and mistakes.png in eval_dir; returns the mistakes shown."""
  from slimflowers.deploy import gradcam  # pylint: disable=g-import-not-at-top
  mistakes = most_confident_mistakes(rows)
  image = gallery_image(mistakes, split, class_names, explainer)
  fileio.write_bytes_atomic(os.path.join(eval_dir, MISTAKES_PNG), gradcam.encode_png(image))
  write_image_summary(eval_dir, "mistakes", image, step,
                      f"The {len(mistakes)} most confident mistakes (at most {MISTAKES_PER_CLASS} per true class), "
                      "most confident first" + (", with Grad-CAM for the predicted class." if explainer else "."))
  return mistakes


def write_label_issues(out_dir, rows, split, class_names, *, step=None, explainer=None):
  """label_issues.csv (every example, least likely label first) and label_issues.png (the first 64) in out_dir;
  with `step`, also the `label_issues` image summary there."""
  fileio.write_text_atomic(os.path.join(out_dir, LABEL_ISSUES_CSV), format_label_issues(rows, class_names))
  first = label_issues(rows)[:GALLERY_SIZE]
  image = gallery_image(first, split, class_names, explainer)
  from slimflowers.deploy import gradcam  # pylint: disable=g-import-not-at-top
  fileio.write_bytes_atomic(os.path.join(out_dir, LABEL_ISSUES_PNG), gradcam.encode_png(image))
  if step is not None:
    write_image_summary(out_dir, "label_issues", image, step,
                        f"The {len(first)} examples whose given label the model finds least likely, least first.")
  return first
