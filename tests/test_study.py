"""The study driver: child processes (streaming, failure, Ctrl-C) and the whole study end to end."""
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from slimflowers.study import children
from slimflowers.study import driver as study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _py(code):
  return [sys.executable, "-c", textwrap.dedent(code)]


def test_child_output_is_prefixed_and_logged(tmp_path):
  out = io.StringIO()
  log = str(tmp_path / "m" / "train.log")
  supervisor = children.Supervisor(out, echo_stderr=False)
  child = supervisor.start("m train", _py("import sys; print('step 1'); print('noise', file=sys.stderr); "
                                          "print('step 2')"), log)
  supervisor.wait("m", [child])
  assert "[m train] step 1\n[m train] step 2\n" in out.getvalue()
  assert "noise" not in out.getvalue()  # stderr (other libraries' detail) goes to the log only
  with open(log) as f:
    text = f.read()
  assert "step 1\n" in text and "step 2\n" in text and "noise\n" in text and "=====" in text  # header, then all


def test_failing_child_stops_the_others_and_names_command_and_log(tmp_path):
  out = io.StringIO()
  supervisor = children.Supervisor(out)
  sleeper = supervisor.start("m eval", _py("import time; time.sleep(60)"), str(tmp_path / "eval.log"))
  failing = supervisor.start("m train", _py("import sys; print('boom'); print('the cause', file=sys.stderr); "
                                            "sys.exit(3)"), str(tmp_path / "train.log"))
  start = time.monotonic()
  with pytest.raises(children.ChildFailed) as e:
    supervisor.wait("m", [failing, sleeper])
  assert time.monotonic() - start < 30
  message = str(e.value)
  assert "m: m train failed with exit code 3" in message
  assert "sys.exit(3)" in message and str(tmp_path / "train.log") in message
  assert "the cause" in message  # the child's last stderr lines
  assert sleeper.proc.poll() is not None  # the evaluator was stopped too


def _sigint_after_children_start(driver, pids, num_children, timeout=60):
  """Runs `driver`, waits until it lists `num_children` child pids in `pids`, sends SIGINT; asserts exit 130 and
  that every listed child is gone. Returns the driver's output."""
  proc = subprocess.Popen(_py(driver), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.monotonic() + timeout
  while not (pids.exists() and len(pids.read_text().split()) == num_children) and time.monotonic() < deadline:
    time.sleep(0.1)
  child_pids = [int(p) for p in pids.read_text().split()]
  proc.send_signal(signal.SIGINT)
  output, _ = proc.communicate(timeout=60)
  assert proc.returncode == 130, output
  for pid in child_pids:
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)
  return output


def test_sigint_stops_trainer_and_evaluator(tmp_path):
  """Ctrl-C on the study: children (in their own process groups) are terminated, exit code 130."""
  pids = tmp_path / "pids"
  driver = f"""
      import sys, time
      from slimflowers.study import children
      from slimflowers.core import fileio
      supervisor = children.Supervisor()
      try:
        with children.StopOnSignals(supervisor.say):  # handlers first, then the pids file the test waits for
          kids = [supervisor.start(n, [sys.executable, "-c", "import time; time.sleep(120)"],
                                   {str(tmp_path)!r} + "/" + n + ".log") for n in ("train", "eval")]
          fileio.write_text_atomic({str(pids)!r}, " ".join(str(k.proc.pid) for k in kids))
          supervisor.wait("m", kids)
      except children.Interrupted as e:
        sys.exit(128 + e.signum)
  """
  output = _sigint_after_children_start(driver, pids, 2)
  assert "stopping train" in output and "stopping eval" in output


def test_study_owned_flags_are_refused(tmp_path):
  result = subprocess.run([sys.executable, "-m", "slimflowers.study", "--models=cifarnet",
                           f"--runs_dir={tmp_path / 'runs'}", f"--dataset_dir={tmp_path / 'data'}",
                           f"--train_dir={tmp_path / 'x'}"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]  # refused (README, "Exit codes")
  (line,) = [line for line in result.stderr.splitlines() if line.strip()]  # one line, no traceback
  assert ": error: --train_dir is set by the study" in line and "drop --train_dir" in line, line
  assert os.listdir(tmp_path) == []  # nothing created


def _not_learning(run):
  """True when every validation result of the run is at chance (slimflowers/eval/sanity.py): it has no best/."""
  return all(r["sanity"]["at_chance"] for r in _jsonl(run / "eval_validation" / "results.jsonl"))


def _fake_finished_run(run, *, final, best, test_best_done=True):
  """A run directory as trainer and evaluator leave it, for `final` steps with the best validation at `best`."""
  (run / "eval_validation" / "best").mkdir(parents=True)
  (run / "run_info.json").write_text(json.dumps({"model_name": "cifarnet", "finished": True, "final_step": final,
                                                 "max_steps": final}))
  row = {"checkpoint": str(run / f"ckpt-{final}"), "accuracy": 0.5, "top_5_accuracy": 1.0, "loss": 1.0,
         "mean_per_class_accuracy": 0.5, "num_examples": 9}
  (run / "eval_validation" / "results.jsonl").write_text(
      "".join(json.dumps({**row, "step": s, "split": "validation"}) + "\n" for s in sorted({best, final})))
  (run / "eval_validation" / "best" / "best.json").write_text(json.dumps({"step": best, "metrics": {}}))
  (run / "eval_test").mkdir()
  (run / "eval_test" / "results.jsonl").write_text(json.dumps({**row, "step": final, "split": "test"}) + "\n")
  if test_best_done:
    (run / "eval_test_best").mkdir()
    (run / "eval_test_best" / "results.jsonl").write_text(json.dumps({**row, "step": best, "split": "test"}) + "\n")


def _recording_python(tmp_path):
  """A stand-in for the Python interpreter that records each command line and does nothing else."""
  log = tmp_path / "commands.txt"
  script = tmp_path / "fake_python"
  script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
  script.chmod(0o755)
  return str(script), log


def test_done_work_is_skipped(tmp_path):
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=str(tmp_path / "data"), runs_dir=str(tmp_path),
                          python="/nonexistent/python")  # any process start would fail
  _fake_finished_run(tmp_path / "cifarnet", final=6, best=3)
  out = io.StringIO()
  study.run_model(cfg, "cifarnet", has_test=True, supervisor=children.Supervisor(out))
  assert "training already finished at step 6" in out.getvalue()
  assert "every evaluation is done" in out.getvalue()


def test_a_finished_run_with_other_flags_is_refused_not_skipped(tmp_path):
  from slimflowers.train import run_record  # pylint: disable=g-import-not-at-top
  from slimflowers.train import program as train  # pylint: disable=g-import-not-at-top
  from slimflowers.train import flags as train_flags  # pylint: disable=g-import-not-at-top
  _fake_finished_run(tmp_path / "cifarnet", final=6, best=3)
  info = json.loads((tmp_path / "cifarnet" / "run_info.json").read_text())
  recorded = train_flags.config(model_name="cifarnet", dataset_name="folder", dataset_dir=str(tmp_path / "data"),
                                train_dir=str(tmp_path / "cifarnet"), max_number_of_steps=6, optimizer="adam")
  info.update(run_record.new_record(train_flags.training_values(train.resolve_config(recorded)), None))
  (tmp_path / "cifarnet" / "run_info.json").write_text(json.dumps(info))
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=str(tmp_path / "data"), runs_dir=str(tmp_path),
                          train_flags=["--max_number_of_steps=6", "--optimizer=sgd"], python="/nonexistent/python")
  out = io.StringIO()
  with pytest.raises(study.StudyError, match=r"^cifarnet: .*--optimizer=sgd \(the run: --optimizer=adam\)"):
    study.run_model(cfg, "cifarnet", has_test=True, supervisor=children.Supervisor(out))
  assert "already finished" not in out.getvalue()
  cfg.train_flags = ["--max_number_of_steps=6", "--optimizer=adam"]  # the same flags, but this fake run has no
  with pytest.raises(study.StudyError, match="final checkpoint ckpt-6 is gone"):  # checkpoint: one line too
    study.run_model(cfg, "cifarnet", has_test=True, supervisor=children.Supervisor(out))


def test_the_report_covers_every_run_in_runs_dir_and_says_which_were_trained(tmp_path, monkeypatch):
  """--models=cifarnet on a runs_dir that already holds another run: the report lists both."""
  runs = tmp_path / "runs"
  _fake_finished_run(runs / "mobilenet_v1_025", final=6, best=3)

  def fake_run_model(cfg, model, *, has_test, supervisor):
    del cfg, has_test, supervisor
    _fake_finished_run(runs / model, final=8, best=8)
    return str(runs / model)
  monkeypatch.setattr(study, "run_model", fake_run_model)
  monkeypatch.setattr(study, "dataset_splits", lambda *unused: {"train", "validation", "test"})
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=str(tmp_path), runs_dir=str(runs))
  out = io.StringIO()
  report = study.run_study(cfg, ["cifarnet"], supervisor=children.Supervisor(out))
  assert [row["run"] for row in report.rows] == ["cifarnet", "mobilenet_v1_025"]
  assert report.trained == ["cifarnet"]
  md = (runs / "report" / "results.md").read_text()
  assert "This invocation trained: cifarnet; the other runs were already in the directory." in md
  assert "This invocation trained: cifarnet;" in out.getvalue()


def test_unfinished_evaluation_is_resumed_by_one_evaluator_and_no_trainer(tmp_path):
  python, commands = _recording_python(tmp_path)
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=str(tmp_path / "data"), runs_dir=str(tmp_path),
                          python=python)
  # The best checkpoint (step 3) is not evaluated on the test split yet; everything else is.
  _fake_finished_run(tmp_path / "cifarnet", final=6, best=3, test_best_done=False)
  out = io.StringIO()
  with pytest.raises(study.StudyError, match=r"without evaluating test best \(step 3\)"):
    study.run_model(cfg, "cifarnet", has_test=True, supervisor=children.Supervisor(out))
  assert "evaluating test best (step 3)" in out.getvalue()
  (command,) = commands.read_text().splitlines()  # one process started, and it is the evaluator
  assert command.startswith(study.EVAL_SCRIPT) and study.TRAIN_SCRIPT not in command
  assert f"--checkpoint_path={tmp_path / 'cifarnet'}" in command.split()
  assert "--final_eval_splits=test" in command.split() and "--continuous" in command.split()


def test_child_env_adds_to_the_environment(tmp_path):
  out = io.StringIO()
  supervisor = children.Supervisor(out)
  child = supervisor.start("m train", _py("import os; print(os.environ['TF_NUM_INTRAOP_THREADS'], "
                                          "os.environ['PYTHONUNBUFFERED'])"), str(tmp_path / "log"),
                           env={"TF_NUM_INTRAOP_THREADS": "3"})
  supervisor.wait("m", [child])
  assert "[m train] 3 1\n" in out.getvalue()


def test_threads_are_shared_out_only_side_by_side(monkeypatch):
  monkeypatch.setattr(os, "cpu_count", lambda: 8)
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir="/d", runs_dir="/r")
  assert study.child_env(cfg) is None  # one model at a time: TensorFlow's default, all cores
  cfg.parallel_models = 2
  assert study.child_env(cfg) == {"TF_NUM_INTRAOP_THREADS": "4"}
  cfg.parallel_models = 16
  assert study.child_env(cfg) == {"TF_NUM_INTRAOP_THREADS": "1"}


THREE = ("cifarnet", "alexnet", "mobilenet_v1_025")  # registered nets (the study checks the names)


def _side_by_side_study(tmp_path, monkeypatch, child_code):
  """A study of three models, two at a time, whose run_model starts one child running child_code(model)."""
  def fake_run_model(cfg, model, *, has_test, supervisor):
    del has_test
    child = supervisor.start(f"{model} train", _py(child_code(model)), str(tmp_path / model / "train.log"),
                             env=study.child_env(cfg))
    supervisor.wait(model, [child])
    return str(tmp_path / model)

  monkeypatch.setattr(study, "run_model", fake_run_model)
  monkeypatch.setattr(study, "dataset_splits", lambda *unused: {"train", "validation"})
  from slimflowers.study import compare  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(compare, "write_report", lambda run_dirs, unused_dir, **unused: ("report", run_dirs))
  monkeypatch.setattr(compare, "print_report", lambda *unused: None)
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=str(tmp_path), runs_dir=str(tmp_path / "runs"),
                          parallel_models=2)
  return cfg, children.Supervisor(io.StringIO())


def test_models_side_by_side_overlap_and_report_in_order(tmp_path, monkeypatch):
  """--parallel_models=2: two models run at once (their time windows overlap), the third when one is done,
  and the report lists the models in the order given."""
  code = lambda m: (f"import time; t = time.time(); time.sleep(0.7); "
                    f"open({str(tmp_path)!r} + '/{m}.times', 'w').write(f'{{t}} {{time.time()}}')")
  cfg, supervisor = _side_by_side_study(tmp_path, monkeypatch, code)
  models = list(THREE)
  assert study.run_study(cfg, models, supervisor=supervisor) == ("report", [str(tmp_path / m) for m in models])
  (s1, e1), (s2, e2), (s3, unused_e3) = [map(float, (tmp_path / f"{m}.times").read_text().split()) for m in models]
  assert s2 < e1 and s1 < e2  # the first two overlap
  assert s3 >= min(e1, e2) - 0.2  # the third waited for a free slot
  assert "2 models at a time" in supervisor.out.getvalue()


def test_a_failure_side_by_side_stops_the_other_model_and_starts_no_new_one(tmp_path, monkeypatch):
  code = lambda m: ("import sys, time; time.sleep(0.5); print('first broke', file=sys.stderr); sys.exit(3)" if m == THREE[0]
                    else f"import time; open({str(tmp_path)!r} + '/{m}.started', 'w'); time.sleep(120)")
  cfg, supervisor = _side_by_side_study(tmp_path, monkeypatch, code)
  start = time.monotonic()
  with pytest.raises(children.ChildFailed, match=f"{THREE[0]} train failed with exit code 3") as e:
    study.run_study(cfg, list(THREE), supervisor=supervisor)
  assert time.monotonic() - start < 60  # m2 was stopped, not waited for
  assert "first broke" in str(e.value)
  assert (tmp_path / f"{THREE[1]}.started").exists() and not (tmp_path / f"{THREE[2]}.started").exists()
  assert not supervisor.live and f"stopping {THREE[1]} train" in supervisor.out.getvalue()


def test_sigint_side_by_side_stops_every_model_and_exits_130(tmp_path):
  """Ctrl-C while two models run at once: the main thread gets it, every child of both models stops."""
  pids = tmp_path / "pids"
  driver = f"""
      import os, sys
      from slimflowers.study import children
      from slimflowers.study import compare
      from slimflowers.study import driver as study
      def fake_run_model(cfg, model, *, has_test, supervisor):
        kid = supervisor.start(model + " train", [sys.executable, "-c", "import time; time.sleep(120)"],
                               {str(tmp_path)!r} + "/" + model + ".log")
        with open({str(pids)!r}, "a") as f:
          f.write(str(kid.proc.pid) + "\\n")
        supervisor.wait(model, [kid])
      study.run_model = fake_run_model
      study.dataset_splits = lambda *unused: {{"train", "validation"}}
      cfg = study.StudyConfig(dataset_name="folder", dataset_dir={str(tmp_path)!r},
                              runs_dir={str(tmp_path / "runs")!r}, parallel_models=2)
      try:
        study.run_study(cfg, {list(THREE)!r})
      except children.Interrupted as e:
        sys.exit(128 + e.signum)
  """
  output = _sigint_after_children_start(driver, pids, 2, timeout=120)
  assert f"stopping {THREE[0]} train" in output and f"stopping {THREE[1]} train" in output
  assert len(pids.read_text().split()) == 2  # the third model never started


# ----------------------------------------------------------------------------- End to end, real scripts

PLOT_SIZE = (800, 500)  # compare.py's figures: 8 x 5 inches at 100 dpi
FRONTIER_SIZE = (1100, 800)  # report_plots.py's frontier: four panels, 11 x 8 inches at 100 dpi


def _markdown_table(text):
  """The first Markdown table of `text` as a list of {header: cell}."""
  lines = text.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("| "))
  table = []
  for line in lines[start:]:
    if not line.startswith("|"):
      break
    table.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])])  # not at an escaped \|
  header, rule, body = table[0], table[1], table[2:]
  assert all(set(cell) <= set("-: ") for cell in rule), rule
  return [dict(zip(header, cells)) for cells in body]


def _value_and_interval(cell):
  """'22.22 [6.3, 54.7]' -> ('22.22', ('6.3', '54.7')); '22.22' -> ('22.22', None)."""
  m = re.fullmatch(r"(\S+)(?: \[(\S+), (\S+)\])?", cell)
  assert m, cell
  return m.group(1), (m.group(2), m.group(3)) if m.group(2) else None


def _check_markdown_report(report, runs, csv_rows):
  """results.md: one row per model whose numbers are results.jsonl's (in %), each run's path, and every plot it
  shows is a PNG that decodes at the figure's size."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  text = (report / "results.md").read_text()
  table = _markdown_table(text)
  assert [r["model"] for r in table] == [r["model"] for r in csv_rows] == list(MODELS)
  for md, row in zip(table, csv_rows):
    run = runs / row["model"]
    info = json.loads((run / "run_info.json").read_text())
    val = _jsonl(run / "eval_validation" / "results.jsonl")
    final = [r for r in val if r["step"] == 6][-1]
    assert md["run"] == row["run"] == row["model"] and md["dataset"] == "folder" and md["size"] == "32"
    assert md["steps"] == "6" and md["params"] == f"{info['trainable_params']:,}"
    final_val, interval = _value_and_interval(md["final val %"])
    assert final_val == f"{100 * final['accuracy']:.2f}" == f"{100 * float(row['final_val_accuracy']):.2f}"
    if interval:  # the 95 % Wilson interval, the same as the CSV's columns
      assert interval == tuple(f"{100 * float(row[f'final_val_accuracy_ci_{end}']):.1f}" for end in ("low", "high"))
    test_top1, _ = _value_and_interval(md["test top-1 %"])
    assert test_top1 == f"{100 * _jsonl(run / 'eval_test' / 'results.jsonl')[-1]['accuracy']:.2f}"
    if row["best_val_accuracy"]:
      assert _value_and_interval(md["best val %"])[0] == f"{100 * float(row['best_val_accuracy']):.2f}"
      assert md["@ step"] == row["best_val_step"]
    else:
      assert md["best val %"] == "n/a" and md["warning"] == row["status"]
    assert f"- `{row['run']}`: `{run}`" in text
  images = re.findall(r"!\[([^\]]*)\]\(([^)]*)\)", text)
  assert [target for _, target in images] == ["loss.png", "val_accuracy.png", "steps_per_hour.png",
                                              "accuracy_vs_params.png", "frontier.png"]
  for _, target in images:
    with Image.open(report / target) as image:
      image.load()  # decodes every pixel: a truncated file fails here
      size = FRONTIER_SIZE if target == "frontier.png" else PLOT_SIZE
      assert image.format == "PNG" and image.size == size, (target, image.format, image.size)

MODELS = ("cifarnet", "mobilenet_v1_025")


@pytest.mark.slow
def test_study_end_to_end(tiny_dataset_with_test, tmp_path):
  """Two tiny nets: trainers, validation evaluators beside them, test evaluations, exports, report; a re-run
  skips all."""
  from slimflowers.eval import metrics  # pylint: disable=g-import-not-at-top
  from tests.test_evaluate import event_scalars  # pylint: disable=g-import-not-at-top
  data = tiny_dataset_with_test  # conftest.py: 3 classes, 32 px, validation 9 / test 9
  runs = tmp_path / "runs"
  cmd = [sys.executable, "-m", "slimflowers.study", "--dataset_name=folder", f"--dataset_dir={data}",
         f"--models={','.join(MODELS)}", f"--runs_dir={runs}", "--eval_batch_size=8", "--eval_interval_secs=1",
         "--export",
         # Trainer flags, forwarded to both trainers:
         "--train_image_size=32", "--batch_size=8", "--max_number_of_steps=6", "--save_interval_steps=3",
         "--save_interval_secs=0", "--log_every_n_steps=3", "--optimizer=momentum", "--learning_rate=0.05"]
  first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
  assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
  for model in MODELS:
    assert f"[{model} train]" in first.stdout and f"[{model} eval]" in first.stdout
    run = runs / model
    info = json.loads((run / "run_info.json").read_text())
    assert info["finished"] and info["final_step"] == 6 and info["image_size"] == 32
    assert "--train_image_size=32" in (run / "flags.txt").read_text()
    assert (run / "train.log").stat().st_size > 0 and (run / "eval.log").stat().st_size > 0
    val = _jsonl(run / "eval_validation" / "results.jsonl")
    assert all(r["num_examples"] == 9 for r in val)
    # The evaluator followed its trainer: checkpoints it wrote (every 3 steps), each once, in order, the final
    # one last, and TensorBoard's events hold every metric at each of them.
    steps = [r["step"] for r in val]
    assert steps == sorted(set(steps)) and steps[-1] == 6 and set(steps) <= {3, 6}, steps
    scalars = event_scalars(str(run / "eval_validation"))
    for key in metrics.EVAL_METRICS + ("confusion_matrix",):
      assert set(scalars[key]) == set(steps), (model, key)
    test = _jsonl(run / "eval_test" / "results.jsonl")
    assert [(r["step"], r["split"], r["num_examples"]) for r in test] == [(6, "test", 9)]
    if _not_learning(run):  # (6 steps: cifarnet stays at chance) no best/, so no best on test, nothing exported
      assert not (run / "eval_validation" / "best" / "best.json").exists() and not (run / "export").exists()
      assert not (run / "eval_test_best" / "results.jsonl").exists()
      continue
    best = json.loads((run / "eval_validation" / "best" / "best.json").read_text())
    test_best = _jsonl(run / "eval_test_best" / "results.jsonl")
    assert [(r["step"], r["split"]) for r in test_best] == [(best["step"], "test")]

  report = runs / "report"
  with open(report / "results.csv") as f:
    rows = list(csv.DictReader(f))
  _check_markdown_report(report, runs, rows)
  assert [r["model"] for r in rows] == list(MODELS)
  for row in rows:
    run = runs / row["model"]
    info = json.loads((run / "run_info.json").read_text())
    val = _jsonl(run / "eval_validation" / "results.jsonl")
    assert row["dataset"] == "folder" and row["image_size"] == "32" and row["steps"] == "6"
    assert row["trainable_params"] == str(info["trainable_params"])
    assert row["final_val_accuracy"] == f"{[r for r in val if r['step'] == 6][-1]['accuracy']:.4f}"
    assert row["test_top1"] == f"{_jsonl(run / 'eval_test' / 'results.jsonl')[-1]['accuracy']:.4f}"
    assert float(row["steps_per_hour"]) > 0 and float(row["train_wall_secs"]) > 0
    if _not_learning(run):  # the report marks it and shows no best
      assert row["status"] == "NOT LEARNING: at chance" and row["best_val_accuracy"] == ""
      assert f"WARNING {row['run']}: NOT LEARNING: at chance" in first.stdout
      continue
    best_acc = max(r["accuracy"] for r in val if not r["sanity"]["at_chance"])
    assert row["best_val_accuracy"] == f"{best_acc:.4f}"
    assert row["best_val_step"] == str(min(r["step"] for r in val if r["accuracy"] == best_acc))
    assert row["best_ckpt_test_top1"] == f"{_jsonl(run / 'eval_test_best' / 'results.jsonl')[-1]['accuracy']:.4f}"
  assert f"| {MODELS[0]}" in first.stdout and f"tensorboard --logdir {runs}" in first.stdout
  assert any(not _not_learning(runs / m) for m in MODELS)  # (mobilenet_v1_025 learns the colours in 6 steps)
  # --export: each model's best checkpoint exported, checked on the test split, and in the report.
  for row in rows:
    run = runs / row["model"]
    if _not_learning(run):
      continue
    best = json.loads((run / "eval_validation" / "best" / "best.json").read_text())
    export = json.loads((run / "export" / "export_report.json").read_text())
    assert export["step"] == best["step"] and (run / "export" / "model_int8.tflite").stat().st_size > 0
    assert (run / "export" / "saved_model" / "saved_model.pb").is_file()
    assert float(row["tflite_int8_mb"]) > 0 and row["int8_test_top1"] != ""

  # Re-running skips what is done: run_model on the real run directories starts no process at all
  # (a python that does not exist would fail any start).
  train_flags = cmd[cmd.index("--train_image_size=32"):]
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=str(data), runs_dir=str(runs), train_flags=train_flags,
                          max_number_of_steps=6, export=True, python="/nonexistent/python")
  out = io.StringIO()
  for model in MODELS:
    study.run_model(cfg, model, has_test=True, supervisor=children.Supervisor(out))
    assert f"{model}: training already finished at step 6" in out.getvalue()
    assert f"{model}: every evaluation is done" in out.getvalue()
    if _not_learning(runs / model):
      assert f"{model}: no best checkpoint to export" in out.getvalue()
    else:
      assert f"{model}: best checkpoint (step" in out.getvalue() and "already exported" in out.getvalue()
  # ... another learning rate is refused, in the trainer's own words, and nothing starts ...
  cfg.train_flags = train_flags + ["--learning_rate=0.01"]
  with pytest.raises(study.StudyError, match=r"cifarnet: --train_dir=.* was trained with other flags: "
                                             r"--learning_rate=0.01 \(the run: --learning_rate=0.05\)"):
    study.run_model(cfg, MODELS[0], has_test=True, supervisor=children.Supervisor(out))
  cfg.train_flags = train_flags
  # ... and asking for more steps trains further (here: tries to start the trainer).
  cfg.max_number_of_steps = 8
  with pytest.raises(FileNotFoundError, match="/nonexistent/python"):
    study.run_model(cfg, MODELS[0], has_test=True, supervisor=children.Supervisor(out))


def test_seeds_get_their_own_run_directories_and_trainer_seeds(tmp_path):
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir="/d", runs_dir=str(tmp_path), seeds=3)
  assert study.train_command(cfg, "cifarnet") == study.train_command(
      study.StudyConfig(dataset_name="folder", dataset_dir="/d", runs_dir=str(tmp_path)), "cifarnet")  # as before
  first, second = study.train_command(cfg, "cifarnet"), study.train_command(cfg, "cifarnet", 2)
  assert f"--train_dir={tmp_path / 'cifarnet'}" in first and not any(a.startswith("--seed") for a in first)
  assert f"--train_dir={tmp_path / 'cifarnet-seed2'}" in second and second[-1] == "--seed=2"
  assert f"--checkpoint_path={tmp_path / 'cifarnet-seed2'}" in study.eval_command(cfg, "cifarnet", seed_index=2)
  assert "--model_name=cifarnet" in study.eval_command(cfg, "cifarnet", seed_index=2)
  cfg.train_flags = ["--seed=5"]  # seeds count from the user's --seed (absl: the last --seed wins)
  assert study.run_name(cfg, "cifarnet", 1) == "cifarnet-seed6"
  assert study.train_command(cfg, "cifarnet", 1)[-2:] == ["--seed=5", "--seed=6"]


def test_seeds_are_scheduled_like_models_and_a_resumed_study_trains_only_the_missing_ones(tmp_path, monkeypatch):
  started = []

  def fake_run_model(cfg, model, *, has_test, supervisor, seed_index=0):
    del has_test, supervisor
    started.append(study.run_name(cfg, model, seed_index))
    return study.run_path(cfg, model, seed_index)
  monkeypatch.setattr(study, "run_model", fake_run_model)
  monkeypatch.setattr(study, "dataset_splits", lambda *unused: {"train", "validation"})
  from slimflowers.study import compare  # pylint: disable=g-import-not-at-top
  reports = []
  monkeypatch.setattr(compare, "write_report", lambda run_dirs, unused_dir, **kwargs: reports.append(
      (run_dirs, kwargs)) or ("report", run_dirs))
  monkeypatch.setattr(compare, "print_report", lambda *unused: None)
  runs = tmp_path / "runs"
  _fake_finished_run(runs / "cifarnet", final=6, best=3)  # a one-seed study's run: the first seed, done
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=str(tmp_path), runs_dir=str(runs), seeds=2,
                          parallel_models=2)
  study.run_study(cfg, ["cifarnet", "alexnet"], supervisor=children.Supervisor(io.StringIO()))
  assert sorted(started) == ["alexnet", "alexnet-seed1", "cifarnet", "cifarnet-seed1"]
  run_dirs, kwargs = reports[-1]
  assert run_dirs == [str(runs / n) for n in ("cifarnet", "alexnet", "cifarnet-seed1", "alexnet-seed1")]
  assert kwargs["trained"] == [str(runs / n) for n in ("alexnet", "cifarnet-seed1", "alexnet-seed1")]
  assert any("cifarnet-seed1: training" == what and "--seed=1" in cmd for what, cmd in kwargs["commands"])


@pytest.mark.slow
def test_study_with_two_seeds_writes_intervals_pairs_per_class_and_the_page(tmp_path):
  """Issue 22's "done when": --seeds=2 of two small nets, side by side; every file of the report, from the files the
  evaluators wrote."""
  from tests import tiny_data  # pylint: disable=g-import-not-at-top
  data = tiny_data.make_dataset(tmp_path / "data", num_classes=3, per_class=12, validation_size=0.25,
                                test_size=0.25, size=32)
  runs = tmp_path / "runs"
  cmd = [sys.executable, "-m", "slimflowers.study", "--dataset_name=folder", f"--dataset_dir={data}",
         f"--models={','.join(MODELS)}", f"--runs_dir={runs}", "--eval_batch_size=8", "--eval_interval_secs=1",
         "--seeds=2", "--parallel_models=2", "--train_image_size=32", "--batch_size=8", "--max_number_of_steps=4",
         "--save_interval_steps=2", "--save_interval_secs=0", "--log_every_n_steps=2", "--optimizer=momentum",
         "--learning_rate=0.05", "--precise_bn_batches=2"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
  names = [m + suffix for suffix in ("", "-seed1") for m in MODELS]
  for name in names:
    info = json.loads((runs / name / "run_info.json").read_text())
    assert info["finished"] and info["train_flags"]["seed"] == ("1" if name.endswith("seed1") else "0")
    test = _jsonl(runs / name / "eval_test" / "results.jsonl")[-1]
    assert test["predictions"]["rows"] == 9 and (runs / name / "eval_test" / "predictions.csv").is_file()
  report = runs / "report"
  with open(report / "results.csv") as f:
    rows = {r["run"]: r for r in csv.DictReader(f)}
  assert set(rows) == set(names)
  for name in names:
    row = rows[name]
    assert float(row["test_top1_ci_low"]) <= float(row["test_top1"]) <= float(row["test_top1_ci_high"])
    assert row["seeds"] == "2" and row["group"] == name.replace("-seed1", "")
    assert float(row["test_top1_min"]) <= float(row["test_top1_mean"]) <= float(row["test_top1_max"])
    assert (report / "per_class" / f"{name}.csv").is_file()
  with open(report / "pairwise.csv") as f:
    pairs = [r for r in csv.DictReader(f) if r["split"] == "test"]
  assert [(r["model_a"], r["model_b"], r["seed"]) for r in pairs] == [(*MODELS, "0"), (*MODELS, "1"),
                                                                      (*MODELS, "mean")]
  for name in ("report.html", "frontier.png", "val_accuracy.png", "loss.png"):
    assert (report / name).stat().st_size > 0, name
  assert "Ranking on the test split" in proc.stdout and str(report / "report.html") in proc.stdout
