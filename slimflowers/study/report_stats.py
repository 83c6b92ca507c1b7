"""The report's uncertainty: intervals on every accuracy, seeds, paired comparisons, ranks, per-class tables.

    analysis = report_stats.analyse(runs, rows)    # compare.Run objects and their table rows (rows get new columns)
    analysis.pairwise      # pairwise.csv's rows
    analysis.ranking       # one sentence: the ranking, with ties where no test separates two models
    analysis.per_class     # {run name: (rows, summary, most confused pairs)}

Everything here reads what the evaluators already wrote (results.jsonl, predictions.csv): the study trains nothing
more and evaluates nothing twice for it. The methods: slimflowers/study/stats.py, SOURCES.md §6.

- Intervals: every accuracy column of results.csv gets `<column>_ci_low` and `<column>_ci_high`, Wilson's 95 %
  score interval from the accuracy and its number of examples (the results.jsonl row).
- Seeds: runs that differ only in --seed (run_info.json's record of the training flags) form one group, named
  after its first run. A group of several runs adds `<column>_mean`, `_sd` (sample standard deviation), `_min`,
  `_max` for the headline accuracies, on every row of the group.
- Paired comparisons, on each split both runs have predictions.csv for (`test`: the final checkpoints on the test
  split, `test_best`: the best-validation ones, `validation`: the final ones): the difference of accuracies, its
  paired-bootstrap interval and McNemar's exact p-value; Holm's correction across the pairs of one split (and seed).
  With seeds: one row per seed both groups have, plus a row `seed=mean` comparing the per-seed means (per example,
  the share of seeds that got it right; the same bootstrap over examples; a sign-flip permutation test for p).
- The ranking: on the first of test, validation, test_best that has comparisons.
"""
import dataclasses
import itertools
import math
import os

import numpy as np

from slimflowers.core import fileio
from slimflowers.core import run_dir
from slimflowers.eval import predictions
from slimflowers.study import stats

# Accuracy columns of compare's table -> where their number of examples comes from.
INTERVAL_COLUMNS = ("best_val_accuracy", "final_val_accuracy", "test_top1", "test_top5", "best_ckpt_test_top1",
                    "best_ckpt_test_top5", "int8_test_top1")
SEED_COLUMNS = ("best_val_accuracy", "final_val_accuracy", "test_top1", "best_ckpt_test_top1")
SPLITS = ("test", "validation", "test_best")   # the ranking's preference, in order
PAIRWISE_COLUMNS = ("model_a", "model_b", "split", "seed", "accuracy_a", "accuracy_b", "difference", "ci_low",
                    "ci_high", "p_value", "p_holm", "significant", "a_only", "b_only", "num_examples")
PER_CLASS_COLUMNS = ("class", "class_id", "precision", "recall", "f1", "support")
PER_CLASS_SUBDIR = "per_class"
MEAN_SEED = "mean"


@dataclasses.dataclass
class Analysis:
  pairwise: list                 # dict rows (PAIRWISE_COLUMNS; "seed" None without seeds)
  ranking: str                   # one sentence ('' when nothing could be compared)
  ranks: dict                    # group name -> rank on the ranking's split
  ranking_split: str             # the split the ranking is on, or None
  per_class: dict                # run name -> (rows, summary, most confused, split)
  groups: dict                   # group name -> [run names], in seed order
  seeds: bool                    # some group has several runs
  predictions: dict              # run name -> {split: predictions.read(...)}


# ----------------------------------------------------------------------------- Reading

def prediction_sources(run):
  """{split: (eval_dir, results row)} of the evaluations whose predictions.csv the report can use."""
  sources = {"test": (run_dir.eval_dir(run.path, "test"), run.test_final),
             "test_best": (run_dir.eval_dir(run.path, "test", best=True), run.test_best),
             "validation": (run_dir.eval_dir(run.path, "validation"), run.validation[-1] if run.validation else None)}
  return {k: v for k, v in sources.items() if v[1]}


def read_predictions(run):
  """{split: predictions} for every usable predictions.csv of `run` (the file its results row names)."""
  found = {}
  for split, (directory, row) in prediction_sources(run).items():
    path = predictions.checked_path(directory, row)
    if path is not None:
      found[split] = predictions.read(path)
  return found


def seed_of(run):
  value = (run.info.get("train_flags") or {}).get("seed", run.flags.get("seed"))
  try:
    return int(value)
  except (TypeError, ValueError):
    return None


def group_key(run):
  """What a run's group shares: every training flag but --seed (and where it was written); else the run itself."""
  recorded = run.info.get("train_flags")
  if not isinstance(recorded, dict):
    return ("run", run.path)
  return tuple(sorted((k, str(v)) for k, v in recorded.items() if k not in ("seed", "train_dir")))


def group_runs(runs):
  """{group name: [runs in seed order]}, groups in the order of their first run; the name is the first run's."""
  by_key = {}
  for run in runs:
    by_key.setdefault(group_key(run), []).append(run)
  groups = {}
  for members in by_key.values():
    members = sorted(members, key=lambda r: (seed_of(r) is None, seed_of(r) or 0, r.name))
    seeds = [seed_of(r) for r in members]
    if None in seeds or len(set(seeds)) < len(seeds):  # the same training twice is not two seeds: compare them
      for run in members:
        groups[run.name] = [run]
      continue
    groups[members[0].name] = members
  return groups


# ----------------------------------------------------------------------------- Table columns

def _examples(run, key, row):
  """The number of examples behind column `key` of `row`."""
  if key == "best_val_accuracy":
    step = row.get("best_val_step")
    hits = [r for r in run.validation if step is not None and int(r["step"]) == step]
    source = hits[-1] if hits else None
  elif key == "final_val_accuracy":
    source = run.validation[-1] if run.validation else None
  elif key.startswith("best_ckpt_test"):
    source = run.test_best
  elif key == "int8_test_top1":  # the export's check of the int8 model over the whole split (export_report.json)
    source = run.export
  else:
    source = run.test_final
  return (source or {}).get("num_examples")


def add_intervals(row, run):
  for key in INTERVAL_COLUMNS:
    low, high = stats.accuracy_interval(row.get(key), _examples(run, key, row))
    row[f"{key}_ci_low"], row[f"{key}_ci_high"] = low, high


def add_seed_columns(rows_by_name, groups):
  for name, members in groups.items():
    for member in members:
      rows_by_name[member.name]["group"] = name
      rows_by_name[member.name]["seeds"] = len(members)
      rows_by_name[member.name]["seed"] = seed_of(member)
    if len(members) < 2:
      continue
    for key in SEED_COLUMNS:
      summary = stats.across_seeds([rows_by_name[m.name].get(key) for m in members])
      for member in members:
        for what in ("mean", "sd", "min", "max"):
          rows_by_name[member.name][f"{key}_{what}"] = summary.get(what)


def csv_columns(rows, seeds):
  """(key, csv format) of the columns this module adds, for results.csv."""
  fmt = "{:.4f}".format
  columns = [(f"{key}_ci_{end}", fmt) for key in INTERVAL_COLUMNS for end in ("low", "high")]
  if seeds:
    columns += [("group", str), ("seed", str), ("seeds", str)]
    columns += [(f"{key}_{what}", fmt) for key in SEED_COLUMNS for what in ("mean", "sd", "min", "max")]
  return [c for c in columns if any(r.get(c[0]) is not None for r in rows)]


def interval_text(row, key, scale=100, digits=1):
  """' [92.3, 97.5]' for a column with an interval, else ''."""
  low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
  if low is None or high is None or (isinstance(low, float) and math.isnan(low)):
    return ""
  return f" [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


# ----------------------------------------------------------------------------- Pairwise

def _correct(found):
  return found["prediction"] == found["label"]


def _same_examples(x, y):
  return x["filename"] == y["filename"] and np.array_equal(x["label"], y["label"])


def mean_difference(correct_a, correct_b, *, resamples=stats.BOOTSTRAP_RESAMPLES, seed=stats.BOOTSTRAP_SEED,
                    confidence=stats.CONFIDENCE, chunk=500):
  """Per-seed means compared on the same examples: `correct_*` [seeds, N] bools. Returns (difference, ci_low,
  ci_high, p): the bootstrap resamples examples (each keeps its seeds together); p from a sign-flip permutation of
  the per-example differences (two-sided, add-one)."""
  a = np.asarray(correct_a, np.float64).mean(axis=0)
  b = np.asarray(correct_b, np.float64).mean(axis=0)
  d = a - b
  n = d.size
  rng = np.random.default_rng(seed)
  boot, flips = [], []
  for start in range(0, resamples, chunk):
    size = min(chunk, resamples - start)
    boot.append(d[rng.integers(0, n, size=(size, n))].mean(axis=1))
    flips.append((d * rng.choice((-1.0, 1.0), size=(size, n))).mean(axis=1))
  boot, flips = np.concatenate(boot), np.concatenate(flips)
  tail = 100 * (1 - confidence) / 2
  low, high = np.percentile(boot, [tail, 100 - tail])
  observed = abs(d.mean())
  p = 1.0 if observed == 0 else float((1 + np.sum(np.abs(flips) >= observed - 1e-12)) / (1 + resamples))
  return float(d.mean()), float(low), float(high), p


def pairwise(groups, found):
  """The pairwise rows (see the module doc), Holm-corrected per (split, seed)."""
  rows = []
  names = list(groups)
  multi = any(len(m) > 1 for m in groups.values())
  for split in SPLITS:
    for name_a, name_b in itertools.combinations(names, 2):
      runs_a = {seed_of(r): r for r in groups[name_a] if split in found.get(r.name, {})}
      runs_b = {seed_of(r): r for r in groups[name_b] if split in found.get(r.name, {})}
      if not multi:  # one run each: compare them whatever their seeds
        runs_a = {None: r for r in runs_a.values()}
        runs_b = {None: r for r in runs_b.values()}
      common = [s for s in runs_a if s in runs_b and _same_examples(found[runs_a[s].name][split],
                                                                   found[runs_b[s].name][split])]
      for s in common:
        x, y = found[runs_a[s].name][split], found[runs_b[s].name][split]
        diff = stats.paired_difference(_correct(x), _correct(y))
        rows.append({"model_a": name_a, "model_b": name_b, "split": split, "seed": s,
                     "accuracy_a": diff.accuracy_a, "accuracy_b": diff.accuracy_b, "difference": diff.difference,
                     "ci_low": diff.ci_low, "ci_high": diff.ci_high, "p_value": diff.p_value, "a_only": diff.a_only,
                     "b_only": diff.b_only, "num_examples": diff.num_examples})
      if multi and len(common) >= 1:
        ca = np.stack([_correct(found[runs_a[s].name][split]) for s in common])
        cb = np.stack([_correct(found[runs_b[s].name][split]) for s in common])
        d, low, high, p = mean_difference(ca, cb)
        rows.append({"model_a": name_a, "model_b": name_b, "split": split, "seed": MEAN_SEED,
                     "accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean()), "difference": d, "ci_low": low,
                     "ci_high": high, "p_value": p, "a_only": None, "b_only": None, "num_examples": int(ca.shape[1])})
  families = {}
  for row in rows:
    families.setdefault((row["split"], row["seed"]), []).append(row)
  for family in families.values():
    adjusted, rejected = stats.holm([r["p_value"] for r in family])
    for row, adj, rej in zip(family, adjusted, rejected):
      row["p_holm"], row["significant"] = adj, rej
  return rows


def ranking(pairs, groups):
  """(sentence, {group: rank}, split) on the first split of SPLITS with comparisons."""
  multi = any(len(m) > 1 for m in groups.values())
  for split in SPLITS:
    family = [r for r in pairs if r["split"] == split and r["seed"] == (MEAN_SEED if multi else r["seed"])]
    if not family:
      continue
    accuracies = {}
    for r in family:
      accuracies[r["model_a"]], accuracies[r["model_b"]] = r["accuracy_a"], r["accuracy_b"]
    significant = {(r["model_a"], r["model_b"]): r["significant"] for r in family}
    names = sorted(accuracies, key=lambda n: -accuracies[n])
    ranks = stats.rank_with_ties(names, accuracies, significant)
    what = {"test": "the test split (final checkpoints)", "test_best": "the test split (best-validation checkpoints)",
            "validation": "the validation split (final checkpoints)"}[split]
    listing = ", ".join(f"{ranks[n]}. {n} ({100 * accuracies[n]:.1f} %)" for n in names)
    test = ("sign-flip permutation tests on the per-seed means" if multi else "McNemar's exact tests")
    sentence = (f"Ranking on {what}, {family[0]['num_examples']:,} images: {listing}; a shared rank means the "
                f"difference is not significant ({test}, Holm's correction across the {len(family)} "
                f"pair{'s' if len(family) != 1 else ''}, 5 % level).")
    return sentence, ranks, split
  return "", {}, None


# ----------------------------------------------------------------------------- Per class

def class_names_of(run, num_classes):
  names = run.info.get("class_names")
  if isinstance(names, list) and len(names) == num_classes:
    return [str(n) for n in names]
  return [str(i) for i in range(num_classes)]


def per_class(runs, found):
  """{run name: (rows, summary, most confused, split)} on each run's first split of SPLITS with predictions."""
  out = {}
  for run in runs:
    available = found.get(run.name, {})
    split = next((s for s in SPLITS if s in available), None)
    if split is None:
      continue
    data = available[split]
    num_classes = int(run.info.get("num_classes") or (max(data["label"].max(), data["top"].max()) + 1))
    names = class_names_of(run, num_classes)
    rows, summary = stats.per_class(data["label"], data["prediction"], names)
    out[run.name] = (rows, summary, stats.most_confused(data["label"], data["prediction"], names), split)
  return out


def per_class_csv(rows, summary):
  lines = [",".join(PER_CLASS_COLUMNS)]
  for r in rows:
    name = '"' + r["class"].replace('"', '""') + '"' if ("," in r["class"] or '"' in r["class"]) else r["class"]
    lines.append(f"{name},{'' if r['class_id'] is None else r['class_id']},{r['precision']:.4f},{r['recall']:.4f},"
                 f"{r['f1']:.4f},{r['support']}")
  support = rows[-1]["support"] if rows else 0
  if summary.get("accuracy") is not None:
    lines.append(f"accuracy,,,,{summary['accuracy']:.4f},{support}")
  if summary.get("mean_per_class_accuracy") is not None:
    lines.append(f"mean per-class accuracy,,,{summary['mean_per_class_accuracy']:.4f},,{support}")
  return "\n".join(lines) + "\n"


def pairwise_csv(pairs, seeds):
  columns = [c for c in PAIRWISE_COLUMNS if seeds or c != "seed"]
  lines = [",".join(columns)]
  for r in pairs:
    cells = []
    for c in columns:
      v = r.get(c)
      if v is None:
        cells.append("")
      elif isinstance(v, bool):
        cells.append("yes" if v else "no")
      elif isinstance(v, float):
        cells.append(f"{v:.6g}" if c in ("p_value", "p_holm") else f"{v:.4f}")
      else:
        cells.append(str(v))
    lines.append(",".join(cells))
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- All of it

def analyse(runs, rows):
  """Adds the interval (and seed) columns to `rows` and computes the rest; see the module doc."""
  by_name = {row["run"]: row for row in rows}
  for run in runs:
    add_intervals(by_name[run.name], run)
  groups = group_runs(runs)
  seeds = any(len(m) > 1 for m in groups.values())
  add_seed_columns(by_name, groups)
  found = {run.name: read_predictions(run) for run in runs}
  pairs = pairwise(groups, found)
  sentence, ranks, split = ranking(pairs, groups)
  return Analysis(pairwise=pairs, ranking=sentence, ranks=ranks, ranking_split=split, per_class=per_class(runs, found),
                  groups={k: [r.name for r in v] for k, v in groups.items()}, seeds=seeds, predictions=found)


def write_files(analysis, output_dir):
  """pairwise.csv and per_class/<run>.csv into the report directory; returns {name: path}."""
  paths = {"pairwise.csv": os.path.join(output_dir, "pairwise.csv")}
  fileio.write_text_atomic(paths["pairwise.csv"], pairwise_csv(analysis.pairwise, analysis.seeds))
  for name, (rows, summary, _, _) in analysis.per_class.items():
    path = os.path.join(output_dir, PER_CLASS_SUBDIR, name.replace(os.sep, "__") + ".csv")
    fileio.write_text_atomic(path, per_class_csv(rows, summary))
    paths[f"per_class/{name}"] = path
  return paths


def seeds_markdown(rows):
  """One line per group of several seeds: mean ± sd [min, max] of the headline accuracies."""
  lines = ["| model | seeds | " + " | ".join(f"{k.replace('_', ' ')} % (mean ± sd [min, max])" for k in SEED_COLUMNS)
           + " |", "|---|--:|" + "--:|" * len(SEED_COLUMNS)]
  seen = set()
  for row in rows:
    if (row.get("seeds") or 0) < 2 or row.get("group") in seen:
      continue
    seen.add(row["group"])
    cells = []
    for key in SEED_COLUMNS:
      mean, sd = row.get(f"{key}_mean"), row.get(f"{key}_sd")
      cells.append("n/a" if mean is None else f"{100 * mean:.2f} ± {100 * (sd or 0):.2f} "
                   f"[{100 * row[f'{key}_min']:.2f}, {100 * row[f'{key}_max']:.2f}]")
    lines.append(f"| {row['group']} | {row['seeds']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def markdown(analysis, max_confused=stats.MOST_CONFUSED, rows=()):
  """The results.md sections: across seeds, the ranking, the pairwise table, per-class summaries and the most
  confused pairs."""
  parts = []
  if analysis.seeds and rows:
    parts += ["## Across seeds", "", seeds_markdown(rows), "", "sd: the sample standard deviation across the seeds "
              "(n − 1).", ""]
  if analysis.ranking:
    parts += ["## Ranking", "", analysis.ranking, ""]
  if analysis.pairwise:
    parts += ["## Paired comparisons (pairwise.csv)", "",
              "| A | B | split |" + (" seed |" if analysis.seeds else "") + " A % | B % | A − B (95 % CI), points | "
              "McNemar p | Holm p | significant |",
              "|---|---|---|" + ("---|" if analysis.seeds else "") + "--:|--:|--:|--:|--:|---|"]
    for r in analysis.pairwise:
      seed = f" {r['seed']} |" if analysis.seeds else ""
      parts.append(f"| {r['model_a']} | {r['model_b']} | {r['split']} |{seed} {100 * r['accuracy_a']:.2f} | "
                   f"{100 * r['accuracy_b']:.2f} | {100 * r['difference']:+.2f} ({100 * r['ci_low']:+.2f}, "
                   f"{100 * r['ci_high']:+.2f}) | {r['p_value']:.3g} | {r['p_holm']:.3g} | "
                   f"{'yes' if r['significant'] else 'no'} |")
    parts += ["", "Differences in accuracy points on the same images: a paired bootstrap interval (10,000 resamples "
              "of the examples, seed 0) and McNemar's exact test on the images only one model gets right; Holm's "
              "correction across the pairs of a split" + (" and seed; seed *mean*: the per-seed means compared "
              "(bootstrap over examples, sign-flip permutation test)" if analysis.seeds else "") + ".", ""]
  if analysis.per_class:
    parts += ["## Per class", ""]
    for name, (rows, summary, confused, split) in analysis.per_class.items():
      parts += [f"### {name} ({split}; per_class/{name.replace(os.sep, '__')}.csv)", "",
                "| class | precision | recall | F1 | support |", "|---|--:|--:|--:|--:|"]
      parts += [f"| {r['class']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['support']} |"
                for r in rows]
      if summary.get("mean_per_class_accuracy") is not None:
        parts += ["", f"Accuracy {100 * summary['accuracy']:.2f} %, mean per-class accuracy "
                  f"{100 * summary['mean_per_class_accuracy']:.2f} %."]
      if confused:
        parts += ["", "Most confused (true → predicted: images, share of the true class): " + "; ".join(
            f"{t} → {p}: {c} ({100 * s:.0f} %)" for t, p, c, s in confused[:max_confused]) + "."]
      parts.append("")
  return "\n".join(parts)
