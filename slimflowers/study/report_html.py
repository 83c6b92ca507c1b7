"""report.html: the whole comparison on one self-contained page, beside results.md and results.csv.

    report_html.write("runs/demo/report/report.html", page)      # page: report_html.Page(...) or page_for(...)

Opens from disk with no server and no network: every image is embedded as a `data:image/png;base64,...` URI,
the style is inline, there is no script and nothing is fetched. Sections: the summary table with 95 % intervals,
the ranking sentence, the pairwise matrix coloured by significance, the curves (with a band across seeds), the
efficiency frontier, the per-class tables and most confused pairs, the confusion matrices, the export summary, and
the commands that reproduce the study.
"""
import base64
import dataclasses
import datetime
import html
import io
import os

import numpy as np

from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.study import report_stats

FILE = "report.html"

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
td.better { background: #c8e6c9; } td.worse { background: #ffcdd2; } td.tie { background: #eeeeee; }
td.self { background: #fafafa; color: #999; text-align: center; }
img { max-width: 100%; border: 1px solid #eee; }
.ci { color: #666; font-size: 0.85em; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; }
.scroll { overflow-x: auto; }
"""


@dataclasses.dataclass
class Page:
  title: str
  rows: list                 # compare's table rows
  columns: list              # (key, header, csv format, markdown format) of the table
  analysis: object           # report_stats.Analysis
  images: dict               # caption -> PNG path (curves, frontier), in order
  export_columns: list = dataclasses.field(default_factory=list)
  commands: list = dataclasses.field(default_factory=list)    # [(what, command)]
  class_names: dict = dataclasses.field(default_factory=dict)  # run name -> [class names]
  notes: list = dataclasses.field(default_factory=list)        # paragraphs under the table


def page_for(output_dir, runs, rows, analysis, *, columns, export_columns, commands, paths):
  """compare's Page: titled by the runs' directory, its table `columns`, the curves and the frontier from `paths`
  (file name -> path, written before), each run's class names (for its confusion matrix)."""
  return Page(
      title=f"Run comparison: {os.path.basename(os.path.dirname(fileio.abspath(output_dir))) or output_dir}",
      rows=rows, columns=list(columns), analysis=analysis, export_columns=list(export_columns),
      commands=list(commands or []),
      images={"Training loss": paths["loss.png"], "Validation accuracy": paths["val_accuracy.png"],
              "Efficiency frontier": paths["frontier.png"], "Training speed": paths["steps_per_hour.png"]},
      class_names={run.name: report_stats.class_names_of(run, int(run.info.get("num_classes") or 0)) for run in runs
                   if run.info.get("num_classes")})


def data_uri(png_bytes):
  return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def _img(png_bytes, alt):
  return f'<img src="{data_uri(png_bytes)}" alt="{html.escape(alt)}">'


def confusion_png(labels, predictions, class_names, title):
  """A confusion matrix (rows: true class, columns: prediction, colour: share of the row, counts up to 20
  classes) as PNG bytes."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  k = len(class_names)
  confusion = np.zeros([k, k], np.int64)
  np.add.at(confusion, (np.asarray(labels), np.asarray(predictions)), 1)
  rows = confusion.sum(axis=1, keepdims=True)
  share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
  side = min(10.0, 3.0 + 0.35 * k)
  fig = Figure(figsize=(side + 1.5, side), dpi=80, layout="constrained")
  ax = fig.add_subplot()
  image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
  fig.colorbar(image, ax=ax, shrink=0.8).set_label("share of the true class")
  if k <= 20:
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    for (i, j), count in np.ndenumerate(confusion):
      if count:
        ax.text(j, i, str(count), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
  ax.set(xlabel="predicted class", ylabel="true class", title=title)
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png")
  return buffer.getvalue()


def _table(header, body, classes=None):
  out = ['<div class="scroll"><table>', "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
  for i, cells in enumerate(body):
    row_classes = classes[i] if classes else [None] * len(cells)
    out.append("<tr>" + "".join(f"<td class=\"{c}\">{v}</td>" if c else f"<td>{v}</td>"
                                for v, c in zip(cells, row_classes)) + "</tr>")
  out.append("</table></div>")
  return "\n".join(out)


def summary_table(rows, columns):
  body = []
  for row in rows:
    cells = []
    for key, _, _, fmt in columns:
      value = row.get(key)
      if value is None:
        cells.append("n/a")
        continue
      interval = report_stats.interval_text(row, key)
      cells.append(html.escape(fmt(value)) + (f' <span class="ci">{html.escape(interval.strip())}</span>'
                                              if interval else ""))
    body.append(cells)
  return _table([h for _, h, *_ in columns], body)


def pairwise_matrix(analysis):
  """The ranking split's comparisons as a matrix: row model minus column model, in points, with its interval and
  Holm-adjusted p; green: the row model is significantly better, red: worse, grey: no significant difference."""
  if not analysis.ranking_split:
    return '<p class="note">No two runs have predictions on a common split (predictions.csv): no comparison.</p>'
  seed = "mean" if analysis.seeds else None
  family = [r for r in analysis.pairwise if r["split"] == analysis.ranking_split and (seed is None or
                                                                                        r["seed"] == seed)]
  names = sorted(analysis.ranks, key=lambda n: (analysis.ranks[n], n))
  cell = {}
  for r in family:
    cell[(r["model_a"], r["model_b"])] = (r["difference"], r["ci_low"], r["ci_high"], r["p_holm"], r["significant"])
    cell[(r["model_b"], r["model_a"])] = (-r["difference"], -r["ci_high"], -r["ci_low"], r["p_holm"],
                                          r["significant"])
  body, classes = [], []
  for a in names:
    cells, kinds = [html.escape(f"{analysis.ranks[a]}. {a}")], [None]
    for b in names:
      if a == b:
        cells.append("—")
        kinds.append("self")
        continue
      d, low, high, p, significant = cell.get((a, b), (None,) * 5)
      if d is None:
        cells.append("n/a")
        kinds.append(None)
        continue
      cells.append(f"{100 * d:+.1f} <span class=\"ci\">[{100 * low:+.1f}, {100 * high:+.1f}], p={p:.3g}</span>")
      kinds.append(("better" if d > 0 else "worse") if significant else "tie")
    body.append(cells)
    classes.append(kinds)
  return _table(["row − column (points)"] + names, body, classes)


def per_class_section(analysis, class_names):
  parts = []
  for name, (rows, summary, confused, split) in analysis.per_class.items():
    parts.append(f"<h3>{html.escape(name)} <span class=\"note\">({html.escape(split)})</span></h3>")
    body = [[html.escape(r["class"]), f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
             str(r["support"])] for r in rows]
    parts.append(_table(["class", "precision", "recall", "F1", "support"], body))
    if summary.get("mean_per_class_accuracy") is not None:
      parts.append(f"<p>Accuracy {100 * summary['accuracy']:.2f} %, mean per-class accuracy "
                   f"{100 * summary['mean_per_class_accuracy']:.2f} %.</p>")
    if confused:
      parts.append(_table(["true class", "predicted as", "images", "share of the true class"],
                          [[html.escape(t), html.escape(p), str(c), f"{100 * s:.0f} %"] for t, p, c, s in confused]))
    data = analysis.predictions.get(name, {}).get(split)
    names = class_names.get(name)
    if data is not None and names:
      parts.append(_img(confusion_png(data["label"], data["prediction"], names, f"{name}, {split}"),
                        f"confusion matrix of {name}"))
  return "\n".join(parts) or '<p class="note">No predictions.csv in any run.</p>'


def render(page):
  """The page's HTML text."""
  analysis = page.analysis
  when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(page.title)}</title>", f"<style>{STYLE}</style></head><body>",
           f"<h1>{html.escape(page.title)}</h1>",
           f'<p class="note">Written {when} by python -m slimflowers.compare.</p>',
           "<h2>Summary</h2>", summary_table(page.rows, page.columns),
           '<p class="note">Accuracies in %; in grey the 95 % Wilson score interval of each accuracy over its number '
           "of images (results.csv: <code>_ci_low</code>, <code>_ci_high</code>).</p>"]
  parts += [f'<p class="note">{html.escape(note)}</p>' for note in page.notes]
  if analysis.seeds:
    parts += ["<h2>Across seeds</h2>", seeds_table(page.rows)]
  ranking = analysis.ranking or "No ranking: no two runs share a split with predictions.csv."
  parts += ["<h2>Ranking</h2>", f"<p>{html.escape(ranking)}</p>",
            "<h2>Pairwise comparisons</h2>", pairwise_matrix(analysis),
            '<p class="note">Every pair (pairwise.csv): the difference of accuracies on the same images, its 95 % '
            "paired-bootstrap interval (10,000 resamples of the images, seed 0) and McNemar's exact test"
            + (" (seed <i>mean</i>: the per-seed means, a sign-flip permutation test)" if analysis.seeds else "") +
            ", Holm-adjusted across the pairs. Green: the row model is significantly more accurate; red: less; "
            "grey: no significant difference.</p>"]
  parts.append("<h2>Curves and efficiency</h2>")
  for caption, path in page.images.items():
    parts.append(f"<h3>{html.escape(caption)}</h3>" + _img(fileio.read_bytes(path), caption))
  parts += ["<h2>Per class</h2>", per_class_section(analysis, page.class_names)]
  exported = [r for r in page.rows if any(r.get(k) is not None for k, *_ in page.export_columns)]
  parts.append("<h2>Export</h2>")
  if exported:
    parts.append(_table(["run"] + [h for _, h, *_ in page.export_columns],
                        [[html.escape(r["run"])] + ["n/a" if r.get(k) is None else html.escape(fmt(r[k]))
                                                    for k, _, _, fmt in page.export_columns] for r in exported]))
  else:
    parts.append('<p class="note">No run was exported (the study\'s --export writes RUN/export/).</p>')
  parts.append("<h2>Reproduce</h2>")
  if page.commands:
    parts.append("<pre>" + "\n\n".join(f"# {html.escape(what)}\n{html.escape(cmd)}" for what, cmd in page.commands)
                 + "</pre>")
  else:
    parts.append(f'<p class="note">Each run\'s flags: RUN/{run_dir.FLAGS_TXT} (python train_image_classifier.py '
                 f"--flagfile=RUN/{run_dir.FLAGS_TXT}).</p>")
  parts.append("</body></html>")
  return "\n".join(parts) + "\n"


def seeds_table(rows):
  seen, body = set(), []
  for row in rows:
    group = row.get("group")
    if group in seen or not row.get("seeds") or row["seeds"] < 2:
      continue
    seen.add(group)
    cells = [html.escape(group), str(row["seeds"])]
    for key in report_stats.SEED_COLUMNS:
      mean, sd = row.get(f"{key}_mean"), row.get(f"{key}_sd")
      cells.append("n/a" if mean is None else f"{100 * mean:.2f} ± {100 * (sd or 0):.2f} <span class=\"ci\">"
                   f"[{100 * row[f'{key}_min']:.2f}, {100 * row[f'{key}_max']:.2f}]</span>")
    body.append(cells)
  return _table(["model", "seeds"] + [f"{k.replace('_', ' ')} % (mean ± sd [min, max])"
                                      for k in report_stats.SEED_COLUMNS], body)


def write(path, page):
  fileio.write_text_atomic(path, render(page))
  return path
