"""Nothing lost, nothing hung, nothing open: the third fault and bad-input sweep (issue 19), one test per case.

    .venv/bin/python -m pytest tests/test_safety_round3.py

Same rules as tests/test_safety.py: each test asserts what the user is told (one line, the exact exit
code: through the real programs where a process is what is tested, else the UserError the entry
scripts print as that line and exit with) and that every file outside the project's own outputs is
byte-identical before and after. Processes are waited for with bounded waits on a condition.

Case (issue 19) -> test:
  1 decoy export.json                  test_a_directory_that_merely_holds_an_export_json_is_not_an_export
  2 files added to an export           test_reexport_keeps_the_files_a_user_added
  3 predict --output over a user file  test_predict_output_never_replaces_a_file_predict_did_not_write
  4 data service exposure              test_data_service_refuses_to_start_without_expose_to_network,
                                       test_data_service_with_expose_to_network_says_what_it_exposes
  5 service dies mid-training          test_a_dead_data_service_stops_the_trainer_with_a_checkpoint
  6 SIGTERM while waiting on it        test_sigterm_while_waiting_on_a_dead_data_service_saves_and_exits_42
  7 nothing listens at the address     test_a_data_service_address_where_nothing_listens_is_an_error
  8, 9 directory link loops in predict  test_predict_walks_link_loops_once_and_screens_bombs (+ _each_file_once)
  10 decompression bomb in predict     test_predict_refuses_a_png_bomb_in_bounded_memory
  11-13 corrupted shards               test_corrupted_shard_in_training_*, test_corrupted_shard_in_evaluation_*,
                                       test_converter_rerun_converts_a_damaged_directory_again, test_verify_*
  14-17 corrupted newest checkpoint    test_resume_*, test_eval_export_and_predict_fall_back_*,
                                       test_no_checkpoint_that_reads_*, test_a_named_corrupted_checkpoint_*
  18 study --runs_dir=FILE             test_study_runs_dir_that_is_a_file_is_one_line
  19 killed exports' OUT.tmp-*         test_export_removes_its_own_leftovers_and_keeps_anything_else
  20 absolute paths in shipped files   test_shipped_export_files_hold_no_local_path
  21, 22 --top_k above the classes     test_export_says_top_k_was_clamped, test_predict_walks_... (its log)
  23, 24 exit codes                    test_every_entry_point_runs_through_cli_run, test_a_flag_that_does_not_*,
                                       test_study_refusals_exit_2, test_readme_states_the_exit_codes_the_code_uses
  25 empty directories                 test_refused_commands_leave_no_empty_directory
"""
import csv
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import types

import pytest
import tensorflow as tf

import datasets
from datasets import records
from slimflowers.core import checkpoints
from slimflowers.core import errors
from slimflowers.eval import program as evaluate
from slimflowers.deploy import export
from slimflowers.deploy import verification
from slimflowers.deploy import serving
from slimflowers.deploy import export_files
from slimflowers.deploy import predict
from slimflowers.core import run_dir
from tests import bad_inputs
from tests import tiny_data
from tests.test_safety import CONVERT
from tests.test_safety import REPO
from tests.test_safety import TRAIN
from tests.test_safety import assert_user_error
from tests.test_safety import finish
from tests.test_safety import run_script
from tests.test_safety import script_env
from tests.test_safety import snapshot
from tests.test_safety import start_script

EXPORT, PREDICT, EVAL = "export_image_classifier.py", "predict_image_classifier.py", "eval_image_classifier.py"
STEPS = 6  # the shared run: checkpoints at steps 2, 4 and 6


def assert_refused(error, *needles, exit_code=2):
  """What the entry scripts print for `error` (slimflowers/core/cli.py): one line holding every needle, and its code."""
  assert isinstance(error, errors.UserError), f"{type(error).__name__}: {error}"
  assert error.exit_code == exit_code, (error.exit_code, str(error))
  message = str(error)
  assert "\n" not in message, message
  for needle in needles:
    assert needle in message, f"{needle!r} not in {message!r}"
  return message


def free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def wait_for(condition, timeout, what, every=0.2):
  """Polls `condition()` until it is true; fails naming `what` after `timeout` seconds (a bounded wait)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    value = condition()
    if value:
      return value
    time.sleep(every)
  raise AssertionError(f"{what}: not within {timeout} s")


def corrupt(path, how):
  """Truncates `path` to half its size, or flips bytes in its middle."""
  size = os.path.getsize(path)
  if how == "truncate":
    os.truncate(path, size // 2)
    return
  with open(path, "r+b") as f:
    f.seek(size // 2)
    middle = f.read(4)
    f.seek(size // 2)
    f.write(bytes(b ^ 0xFF for b in middle))


def data_file(prefix):
  return glob.glob(prefix + ".data-*-of-*")[0]


# ----------------------------------------------------------------------------------------------------------------------
# Shared: a tiny dataset (with its photos, for --source) and a trained run with three checkpoints


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """{"dir": the converted dataset, "photos": its source folder}: 3 classes, train 27 / validation 9."""
  tmp = tmp_path_factory.mktemp("round3_data")
  converted = tiny_data.make_dataset(tmp, num_classes=3, per_class=12, size=32)
  return {"dir": converted, "photos": os.path.join(str(tmp), "photos"), "root": str(tmp)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
  """A finished cifarnet run of STEPS steps with ckpt-2, ckpt-4 and ckpt-6."""
  train_dir = str(tmp_path_factory.mktemp("round3_run") / "cifarnet")
  tiny_data.train(train_dir, data["dir"], max_number_of_steps=STEPS, save_interval_steps=2)
  assert [checkpoints.checkpoint_number(p) for p in checkpoints.list_checkpoints(train_dir)] == [2, 4, 6]
  return train_dir


@pytest.fixture
def run(trained, tmp_path):
  """A copy of the shared run, to damage."""
  copy = str(tmp_path / "cifarnet")
  shutil.copytree(trained, copy)
  return copy


@pytest.fixture
def dataset(data, tmp_path):
  """A copy of the converted dataset and its photos, to damage."""
  shutil.copytree(data["root"], tmp_path / "data")
  return {"dir": str(tmp_path / "data" / "converted"), "photos": str(tmp_path / "data" / "photos")}


def a_photo(tmp_path):
  path = tmp_path / "photo.jpg"
  path.write_bytes(bad_inputs.encode(bad_inputs.quadrants(32, 32), "JPEG"))
  return str(path)


# ----------------------------------------------------------------------------------------------------------------------
# 1, 2, 19, 20, 21: the export directory


def test_a_directory_that_merely_holds_an_export_json_is_not_an_export(trained, tmp_path):
  users = tmp_path / "w"
  (users / "src").mkdir(parents=True)
  (users / "export.json").write_text("{}")
  (users / "src" / "app.js").write_text("the user's app\n")
  before = snapshot(users)
  with pytest.raises(errors.UserError) as e:
    export.export_run(trained, str(users), formats=("tflite",), quantize=("float32",))
  assert_refused(e.value, f"--output_dir={users} exists and is not an export", run_dir.EXPORT_MANIFEST,
                 "new or empty directory")
  assert snapshot(users) == before
  assert sorted(os.listdir(tmp_path)) == ["w"]  # no staging sibling left either


def test_reexport_keeps_the_files_a_user_added(trained, tmp_path, caplog):
  out = tmp_path / "export"
  export.export_run(trained, str(out), formats=("tflite",), quantize=("float32",))
  manifest = json.loads((out / run_dir.EXPORT_MANIFEST).read_text())["files"]
  assert set(manifest) == {"export.json", "export_report.json", "labels.txt", "model_float32.tflite"}
  assert all(set(v) == {"bytes", "sha256"} for v in manifest.values())
  (out / "NOTES.md").write_text("my notes about this model\n")
  (out / "app_assets" / "icons").mkdir(parents=True)
  (out / "app_assets" / "icons" / "flower.png").write_bytes(bad_inputs.png(bad_inputs.quadrants(8, 8)))
  users = {rel: snapshot(out / rel) for rel in ("NOTES.md", "app_assets")}
  caplog.set_level("INFO", logger="absl")
  export.export_run(trained, str(out), formats=("tflite",), quantize=("float32", "float16"))
  assert "Keeping 2 file(s)" in caplog.text and "NOTES.md" in caplog.text
  assert sorted(os.listdir(out)) == sorted(["NOTES.md", "app_assets", "export.json", "export_report.json",
                                            "labels.txt", "model_float16.tflite", "model_float32.tflite",
                                            run_dir.EXPORT_MANIFEST])
  assert {rel: snapshot(out / rel) for rel in users} == users
  assert set(json.loads((out / run_dir.EXPORT_MANIFEST).read_text())["files"]) == {
      "export.json", "export_report.json", "labels.txt", "model_float16.tflite", "model_float32.tflite"}
  # A file of the export's that the user changed, at a path the export writes: refused, unless --overwrite.
  (out / "labels.txt").write_text("0:my own names\n")
  before = snapshot(out)
  with pytest.raises(errors.UserError) as e:
    export.export_run(trained, str(out), formats=("tflite",), quantize=("float32",))
  assert_refused(e.value, f"--output_dir={out} holds labels.txt", "--overwrite")
  assert snapshot(out) == before
  export.export_run(trained, str(out), formats=("tflite",), quantize=("float32",), overwrite=True)
  assert (out / "labels.txt").read_text() == "0:class_0\n1:class_1\n2:class_2\n"
  assert {rel: snapshot(out / rel) for rel in users} == users
  assert not (out / "model_float16.tflite").exists()  # the old export's own file, not written this time


def test_export_removes_its_own_leftovers_and_keeps_anything_else(trained, tmp_path, caplog):
  out = tmp_path / "export"
  ours = tmp_path / "export.tmp-abcd1234"  # a killed export's staging directory: a full copy of the model
  (ours / "saved_model" / "variables").mkdir(parents=True)
  (ours / "saved_model" / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 1000)
  (ours / "labels.txt").write_text("0:a\n")
  carried = tmp_path / "export.tmp-0123456789ab"  # killed while moving a user's file into the new export
  carried.mkdir()
  (carried / "NOTES.md").write_text("the user's\n")
  export_files.write_manifest(str(carried))
  (carried / "mine.txt").write_text("the user's too\n")
  backup = tmp_path / "export.tmp-backup"  # a user's own directory with a look-alike name
  backup.mkdir()
  (backup / "labels.txt").write_text("0:a\n")
  kept = {p.name: snapshot(p) for p in (carried, backup)}
  caplog.set_level("INFO", logger="absl")
  export.export_run(trained, str(out), formats=("tflite",), quantize=("float32",))
  assert not ours.exists()
  assert re.search(r"Removed 1 leftover\(s\) of a killed export beside .*export: export\.tmp-abcd1234", caplog.text)
  assert f"{carried} holds files an export did not write (mine.txt): left in place" in caplog.text
  assert {p: snapshot(tmp_path / p) for p in kept} == kept
  assert sorted(os.listdir(tmp_path)) == sorted(["export", carried.name, backup.name])


def _strings(value):
  if isinstance(value, dict):
    for v in value.values():
      yield from _strings(v)
  elif isinstance(value, list):
    for v in value:
      yield from _strings(v)
  elif isinstance(value, str):
    yield value


def test_shipped_export_files_hold_no_local_path(trained, data, tmp_path):
  out = tmp_path / "export"
  export.export_run(trained, str(out), formats=("tflite",), quantize=("float32",), dataset_dir=data["dir"],
                    verify_split="validation")
  for name in (run_dir.EXPORT_JSON, run_dir.EXPORT_REPORT, run_dir.EXPORT_MANIFEST):
    text = (out / name).read_text()
    for local in (str(tmp_path.parent.parent), trained, data["dir"], os.path.expanduser("~")):
      assert local not in text, (name, local)
    assert not [s for s in _strings(json.loads(text)) if s.startswith("/")], name
  described = json.loads((out / run_dir.EXPORT_JSON).read_text())
  assert described["checkpoint"] == f"cifarnet/ckpt-{STEPS}"  # relative to the run's parent
  assert json.loads((out / run_dir.EXPORT_REPORT).read_text())["checkpoint"] == f"cifarnet/ckpt-{STEPS}"


def test_export_says_top_k_was_clamped(trained, tmp_path, caplog):
  caplog.set_level("WARNING")
  export.export_run(trained, str(tmp_path / "k10"), formats=("tflite",), quantize=("float32",), top_k=10)
  assert "--top_k=10 exceeds the model's 3 classes: the top-k outputs hold 3." in caplog.text
  assert json.loads((tmp_path / "k10" / run_dir.EXPORT_JSON).read_text())["top_k"] == 3
  caplog.clear()
  assert (serving.resolve_top_k(None, 3), serving.resolve_top_k(None, 102), serving.resolve_top_k(2, 3)) == (3, 5, 2)
  assert "--top_k" not in caplog.text  # not asked for: the default is 5, or the class count when fewer


# ----------------------------------------------------------------------------------------------------------------------
# 3, 7-10, 22: predict


def test_predict_output_never_replaces_a_file_predict_did_not_write(trained, tmp_path):
  photo = a_photo(tmp_path)
  for name, content in (("report.csv", "name,score\nrose,1\n"), ("log.jsonl", '{"event": "mine"}\n')):
    users = tmp_path / name
    users.write_text(content)
    before = snapshot(tmp_path)
    with pytest.raises(errors.UserError) as e:
      predict.run(trained, [photo], output=str(users))
    assert_refused(e.value, f"--output={users} exists and was not written by predict_image_classifier.py",
                   "--overwrite")
    assert snapshot(tmp_path) == before
    predict.run(trained, [photo], output=str(users), overwrite=True)
    assert users.read_text() != content
    mine = users.read_text()
    predict.run(trained, [photo, photo], output=str(users))  # predict's own file: replaced without --overwrite
    assert users.read_text() == mine  # the same photo twice is classified once


@pytest.fixture(scope="module")
def predicted(trained, tmp_path_factory):
  """predict_image_classifier.py (the real script, wrapped to report its peak RSS) on a folder with two directory
  link loops, a 514 KB PNG that decodes to 23000 x 23000, a JPEG header bomb, a 5000 x 3000 photo, --top_k=10."""
  tmp = tmp_path_factory.mktemp("round3_predict")
  photos = tmp / "photos"
  (photos / "a").mkdir(parents=True)
  (photos / "b").mkdir()
  (photos / "a" / "p.jpg").write_bytes(bad_inputs.encode(bad_inputs.quadrants(32, 32), "JPEG"))
  (photos / "b" / "q.png").write_bytes(bad_inputs.png(bad_inputs.quadrants(24, 40)))
  os.symlink("..", photos / "a" / "up")
  os.symlink("../a", photos / "a" / "self")
  os.symlink("../b", photos / "b" / "to_b")  # a third link: into its own folder (a loop of one)
  bomb = bad_inputs.png_bomb()
  (photos / "bomb.png").write_bytes(bomb)
  (photos / "bomb_2.png").write_bytes(bomb)
  (photos / "header_bomb.jpg").write_bytes(bad_inputs.jpeg_header_bomb())
  (photos / "big.jpg").write_bytes(bad_inputs.encode(bad_inputs.quadrants(3000, 5000), "JPEG", quality=80))
  before = snapshot(photos)
  out = tmp / "predictions.csv"
  # The peak RSS of this process image: VmHWM (getrusage's ru_maxrss would also count the forking pytest worker's).
  wrapper = ("import re, runpy, sys\n"
             f"sys.argv = [{os.path.join(REPO, PREDICT)!r}] + sys.argv[1:]\n"
             "try:\n"
             "  runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "finally:\n"
             "  status = open('/proc/self/status').read()\n"
             "  print('PEAK_RSS_KB', re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1), file=sys.stderr)\n")
  start = time.monotonic()
  proc = subprocess.Popen([sys.executable, "-c", wrapper, f"--model={trained}", str(photos), "--top_k=10",
                           f"--output={out}"], cwd=REPO, env=script_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  result = finish(proc, timeout=180)  # the unfixed walk never ends (and grows ~13 MB/s)
  peak = int(re.search(r"PEAK_RSS_KB (\d+)", result.stderr).group(1)) * 1024
  print(f"predict on {len(bomb):,} B PNG bombs: peak RSS {peak / 1e9:.2f} GB in {time.monotonic() - start:.1f} s")
  with open(out, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  return types.SimpleNamespace(proc=result, rows=rows, peak=peak, photos=photos, before=before, bomb=len(bomb))


def test_predict_walks_link_loops_once_and_screens_bombs(predicted):
  assert predicted.proc.returncode == 0, predicted.proc.stderr[-3000:]
  assert "Traceback" not in predicted.proc.stderr
  photos = predicted.photos
  assert [r["path"] for r in predicted.rows] == [str(photos / n) for n in (
      "a/p.jpg", "b/q.png", "big.jpg", "bomb.png", "bomb_2.png", "header_bomb.jpg")]
  by_name = {os.path.basename(r["path"]): r for r in predicted.rows}
  for name in ("p.jpg", "q.png", "big.jpg"):
    assert by_name[name]["error"] == "" and by_name[name]["label_1"].startswith("class_"), by_name[name]
  assert by_name["header_bomb.jpg"]["error"].startswith("truncated or corrupt: ")
  assert "Classified 3 of 6 files" in predicted.proc.stdout
  # 22: --top_k above the classes is said, and the rows hold the 3 there are.
  assert "--top_k=10 exceeds the model's 3 classes: the top-k outputs hold 3." in predicted.proc.stdout
  assert list(predicted.rows[0]) == ["path"] + [f"{k}_{i}" for i in (1, 2, 3) for k in ("label", "probability")] + [
      "error"]
  assert snapshot(photos) == predicted.before


def test_predict_refuses_a_png_bomb_in_bounded_memory(predicted):
  assert predicted.bomb < 600_000  # 514 KB
  by_name = {os.path.basename(r["path"]): r for r in predicted.rows}
  for name in ("bomb.png", "bomb_2.png"):
    assert by_name[name]["error"] == ("too large to decode safely: 23000x23000 = 529 Mpx (more than 179 Mpx); "
                                      "downsize it first"), by_name[name]
  assert predicted.peak < 2e9, f"peak RSS {predicted.peak / 1e9:.2f} GB"


def test_predict_and_the_converter_walk_folders_the_same_way(predicted):
  """One walk (datasets.dataset_utils.walk_files), each file once: predict's files are the converter's."""
  from datasets import dataset_utils  # pylint: disable=g-import-not-at-top
  photos = str(predicted.photos)
  assert predict.list_files([photos]) == sorted(dataset_utils.walk_files(photos))
  assert len(predict.list_files([photos, os.path.join(photos, "a"), os.path.join(photos, "a", "p.jpg")])) == 6


# ----------------------------------------------------------------------------------------------------------------------
# 11-13: corrupted shards


def shard(dataset_dir, split):
  return sorted(glob.glob(os.path.join(dataset_dir, f"*_{split}_*.tfrecord")))[0]


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupted_shard_in_training_is_named_with_its_split_and_the_fix(dataset, data, tmp_path, how):
  bad = shard(dataset["dir"], "train")
  corrupt(bad, how)
  before = snapshot(os.path.dirname(dataset["dir"]))
  with pytest.raises(errors.UserError) as e:
    tiny_data.train(tmp_path / "run", dataset["dir"], max_number_of_steps=2,
                    decoded_cache_mb=1024 if how == "flip" else 0)  # the in-memory cache, and the stream
  assert_refused(e.value, bad, "(train split)", "Convert it again: python download_and_convert_data.py",
                 f"--dataset_dir={dataset['dir']}", f"--source={data['photos']}", "--overwrite")  # as converted
  assert snapshot(os.path.dirname(dataset["dir"])) == before


def test_corrupted_shard_in_evaluation_is_named_with_its_split_and_the_fix(dataset, run):
  bad = shard(dataset["dir"], "validation")
  corrupt(bad, "truncate")
  with pytest.raises(errors.UserError) as e:
    evaluate.run(tf.distribute.get_strategy(), checkpoint_path=run, dataset_name="folder", dataset_dir=dataset["dir"],
                 batch_size=9)
  assert_refused(e.value, bad, "(validation split)", "has ", "truncated", "--overwrite")


def test_converter_rerun_converts_a_damaged_directory_again(dataset, caplog):
  bad = shard(dataset["dir"], "train")
  corrupt(bad, "flip")
  photos = snapshot(dataset["photos"])
  caplog.set_level("INFO", logger="absl")
  meta = datasets.convert("folder", dataset["dir"], source=dataset["photos"], validation_size=0.25, num_workers=1)
  assert "nothing to do" not in caplog.text
  assert f"{bad} (train split) does not hold the bytes written (its sha256 differs: corrupted): converting" in \
      caplog.text
  assert records.shard_problems(dataset["dir"], meta, read_records=True) == []
  assert snapshot(dataset["photos"]) == photos
  caplog.clear()
  datasets.convert("folder", dataset["dir"], source=dataset["photos"], validation_size=0.25, num_workers=1)
  assert "already holds a complete conversion" in caplog.text  # and now it is


def test_verify_reads_every_record_and_names_the_bad_shard(dataset, data):
  bad = shard(dataset["dir"], "validation")
  corrupt(bad, "flip")
  before = snapshot(os.path.dirname(dataset["dir"]), dir_mtimes=False)
  damaged = run_script(CONVERT, "--dataset_name=folder", f"--dataset_dir={dataset['dir']}", "--verify", timeout=120)
  assert_user_error(damaged, CONVERT, bad, "(validation split)", "corrupted", "--overwrite")
  assert snapshot(os.path.dirname(dataset["dir"]), dir_mtimes=False) == before
  assert datasets.verify("folder", data["dir"]) == {"train": 27, "validation": 9}  # what the good one reads
  os.truncate(bad, 0)  # no size and checksum to compare with (an older dataset.json): the records are read
  meta = records.read_metadata(dataset["dir"])
  for info in meta["splits"].values():
    info.pop("file_bytes"), info.pop("file_sha256")
  with open(os.path.join(dataset["dir"], records.DATASET_JSON), "w", encoding="utf-8") as f:
    json.dump(meta, f)
  with pytest.raises(errors.UserError) as e:
    datasets.verify("folder", dataset["dir"])
  assert_refused(e.value, "(validation split) hold 0 records, not the 9 dataset.json counts")


# ----------------------------------------------------------------------------------------------------------------------
# 14-17: a corrupted newest checkpoint


def test_resume_falls_back_past_a_truncated_newest_checkpoint_and_keeps_training(run, data, caplog):
  bad = data_file(os.path.join(run, "ckpt-6"))
  corrupt(bad, "truncate")
  with open(bad, "rb") as f:
    bad_bytes = f.read()
  caplog.set_level("INFO", logger="absl")
  info = tiny_data.train(run, data["dir"], max_number_of_steps=10, save_interval_steps=2)
  assert re.search(r"Checkpoint .*ckpt-6 does not read completely \(Read less bytes than requested\): using the "
                   r"previous one, ckpt-4; its files are moved aside, never deleted: "
                   r"ckpt-6\.data-00000-of-00001\.unreadable, ckpt-6\.index\.unreadable", caplog.text)
  assert f"RESUMING from {os.path.join(run, 'ckpt-4')} (step 4)" in caplog.text
  assert info["finished"] and info["final_step"] == 10
  with open(bad + checkpoints.UNREADABLE_SUFFIX, "rb") as f:
    assert f.read() == bad_bytes  # kept, byte for byte
  for step in (6, 8, 10):  # trained on from step 4, through a new step 6
    checkpoints.check_readable(os.path.join(run, f"ckpt-{step}"))
  assert tf.train.latest_checkpoint(run).endswith("ckpt-10")


def test_eval_export_and_predict_fall_back_past_an_overwritten_newest_checkpoint(run, data, tmp_path, caplog):
  corrupt(data_file(os.path.join(run, "ckpt-6")), "flip")
  bad = {p: snapshot(p) for p in glob.glob(os.path.join(run, "ckpt-6.*"))}
  caplog.set_level("INFO", logger="absl")
  warning = re.compile(r"Checkpoint .*ckpt-6 does not read completely \(.*Checksum does not match.*\): using the "
                       r"previous one, ckpt-4; its files are left in place")
  (result,) = evaluate.run(tf.distribute.get_strategy(), checkpoint_path=run, dataset_name="folder",
                           dataset_dir=data["dir"], batch_size=9)
  assert result["step"] == 4 and warning.search(caplog.text)
  caplog.clear()
  report = export.export_run(run, str(tmp_path / "export"), formats=("tflite",), quantize=("float32",))
  assert report["step"] == 4 and report["checkpoint"] == "cifarnet/ckpt-4" and warning.search(caplog.text)
  caplog.clear()
  (prediction,) = predict.run(run, [a_photo(tmp_path)])
  assert prediction.top_k and warning.search(caplog.text)
  assert predict.load_predictor(run).what.endswith("ckpt-4 (step 4)")
  assert {p: snapshot(p) for p in bad} == bad  # never deleted, never moved by a reader


def test_no_checkpoint_that_reads_is_a_one_line_error_and_the_files_stay(run, tmp_path):
  for prefix in checkpoints.list_checkpoints(run):
    corrupt(data_file(prefix), "truncate")
  before = snapshot(run)
  for call in (lambda: export.export_run(run, str(tmp_path / "export"), formats=("tflite",), quantize=("float32",)),
               lambda: predict.run(run, [a_photo(tmp_path)])):
    with pytest.raises(errors.UserError) as e:
      call()
    assert_refused(e.value, f"None of the 3 checkpoint(s) in {run} reads completely", "ckpt-6",
                   "they are left in place")
  assert snapshot(run) == before
  assert not (tmp_path / "export").exists()


def test_a_named_corrupted_checkpoint_is_a_one_line_error(run, tmp_path):
  prefix = os.path.join(run, "ckpt-4")
  corrupt(data_file(prefix), "flip")
  with pytest.raises(errors.UserError) as e:
    export.export_run(prefix, str(tmp_path / "export"), formats=("tflite",), quantize=("float32",))
  assert_refused(e.value, f"--checkpoint_path={prefix} does not read completely", "Checksum does not match",
                 "Pass its directory")


# ----------------------------------------------------------------------------------------------------------------------
# 4-7: the tf.data service


def test_data_service_refuses_to_start_without_expose_to_network():
  port = free_port()
  proc = subprocess.run([sys.executable, "-m", "slimflowers.data_service", f"--port={port}", "--workers=1"],
                        cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=120)
  assert_user_error(proc, "data_service.py", "Refusing to start", "listen on all network interfaces",
                    "authenticate no one", "with this user's rights", "private network", "--expose_to_network")
  with pytest.raises(OSError):
    socket.create_connection(("localhost", port), timeout=2).close()  # nothing was started


@pytest.fixture(scope="module")
def service_runs(data, tmp_path_factory):
  """A service (--expose_to_network) and two trainers reading from it until it is SIGKILLed: then A waits out its
  6 s timeout, and B gets SIGTERM."""
  tmp = tmp_path_factory.mktemp("round3_service")
  port = free_port()
  log = tmp / "service.log"
  with open(log, "w") as out:
    service = subprocess.Popen([sys.executable, "-m", "slimflowers.data_service", f"--port={port}", "--workers=1",
                                "--expose_to_network"], cwd=REPO, env=script_env(), stdout=out,
                               stderr=subprocess.STDOUT)
  trainers = {}
  try:
    def trainer(name, address, timeout):
      flags = [f"--{k}={v}" for k, v in tiny_data.TRAIN_DEFAULTS.items()]
      stdout, stderr = open(tmp / f"{name}.out", "w"), open(tmp / f"{name}.err", "w")
      proc = start_script(TRAIN, f"--train_dir={tmp / name}", f"--dataset_dir={data['dir']}", *flags,
                          "--max_number_of_steps=1000000", "--save_interval_steps=1000000",
                          f"--tf_data_service={address}", f"--tf_data_service_timeout_secs={timeout}",
                          stdout=stdout, stderr=stderr)
      trainers[name] = (proc, stdout, stderr)
      return proc

    b = trainer("B", f"grpc://localhost:{port}", 600)  # waits for the service to come up (up to 600 s)
    wait_for(lambda: "Train with" in log.read_text() or service.poll() is not None, 120, "the service's start")
    assert service.poll() is None, log.read_text()
    a = trainer("A", f"grpc://localhost:{port}", 6)
    for name, proc in (("A", a), ("B", b)):
      wait_for(lambda n=name, p=proc: re.search(r"step \d+/", (tmp / f"{n}.out").read_text()) or p.poll() is not None,
               240, f"trainer {name}'s first steps")
      assert proc.poll() is None, (tmp / f"{name}.err").read_text()[-3000:]
    service.kill()  # the service dies mid-training
    service.wait(60)
    killed = time.monotonic()
    wait_for(lambda: "Failed to heartbeat" in (tmp / "B.err").read_text() or b.poll() is not None, 60,
             "trainer B noticing the dead dispatcher")
    b.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    ends = {}

    def ended():
      ends.update({n: time.monotonic() for n, p in (("A", a), ("B", b)) if n not in ends and p.poll() is not None})
      return len(ends) == 2

    wait_for(ended, 120, "trainers A and B ending (hung?)", every=0.05)
  finally:
    for proc, stdout, stderr in trainers.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      stdout.close()
      stderr.close()
    if service.poll() is None:
      service.kill()
      service.wait()
  outputs = {name: types.SimpleNamespace(returncode=proc.returncode, stdout=(tmp / f"{name}.out").read_text(),
                                         stderr=(tmp / f"{name}.err").read_text(), train_dir=tmp / name)
             for name, (proc, _, _) in trainers.items()}
  return types.SimpleNamespace(port=port, log=log.read_text(), runs=outputs, tmp=tmp,
                               after_kill={"A": ends["A"] - killed, "B": ends["B"] - signalled})


def _error_line(proc, program, label="error"):
  """The one `program: label: ...` line (the C++ client's heartbeat warnings may precede it); no traceback."""
  lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{program}: ")]
  assert len(lines) == 1 and lines[0].startswith(f"{program}: {label}: "), proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr + proc.stdout
  return lines[0]


def test_data_service_with_expose_to_network_says_what_it_exposes(service_runs):
  assert "--expose_to_network: the dispatcher and every worker listen on all network interfaces" in service_runs.log
  assert "Keep these ports inside a private network" in service_runs.log


def test_a_dead_data_service_stops_the_trainer_with_a_checkpoint(service_runs):
  run = service_runs.runs["A"]
  assert run.returncode == 1, run.stderr[-3000:]
  line = _error_line(run, TRAIN)
  match = re.search(rf"The tf.data service at grpc://localhost:{service_runs.port} stopped answering \(\d+ s, "
                    r"--tf_data_service_timeout_secs\); at step (\d+), saved (\S+)\. Restart the service "
                    r"\(python -m slimflowers.data_service\), then run the same command to continue\.$", line)
  assert match, line
  step, saved = int(match.group(1)), match.group(2)
  assert saved == str(run.train_dir / f"ckpt-{step}") and step > 0
  checkpoints.check_readable(saved)
  assert checkpoints.read_global_step(saved) == step
  assert not (run.train_dir / ".lock").exists()
  assert service_runs.after_kill["A"] < 60, service_runs.after_kill


def test_sigterm_while_waiting_on_a_dead_data_service_saves_and_exits_42(service_runs):
  run = service_runs.runs["B"]
  assert run.returncode == 42, run.stderr[-3000:]
  line = _error_line(run, TRAIN, "stopped")
  match = re.search(rf"SIGTERM while waiting for the tf.data service at grpc://localhost:{service_runs.port}, which "
                    r"does not answer; at step (\d+), saved (\S+)\. Run the same command to continue from there\.$",
                    line)
  assert match, line
  checkpoints.check_readable(match.group(2))
  assert service_runs.after_kill["B"] < 30, service_runs.after_kill  # not its 600 s timeout


def test_a_data_service_address_where_nothing_listens_is_an_error(data, tmp_path, caplog):
  address = f"grpc://localhost:{free_port()}"
  caplog.set_level("WARNING")
  start = time.monotonic()
  with pytest.raises(errors.UserError) as e:
    tiny_data.train(tmp_path / "run", data["dir"], max_number_of_steps=2, tf_data_service=address,
                    tf_data_service_timeout_secs=2)
  assert_refused(e.value, f"--tf_data_service={address}: nothing answers there", "waited 2 s",
                 "Start the service first", "--expose_to_network")
  assert f"Nothing answers at {address} yet: waiting up to 2 s" in caplog.text  # said at once, not after the wait
  assert time.monotonic() - start < 30
  assert sorted(os.listdir(tmp_path)) == []  # refused before anything was created


# ----------------------------------------------------------------------------------------------------------------------
# 18, 23-25: entry points, exit codes, refused commands


ENTRY_POINTS = {TRAIN: TRAIN, EVAL: EVAL, CONVERT: CONVERT, EXPORT: EXPORT, PREDICT: PREDICT,
                "study.py": "slimflowers/study/__main__.py", "compare.py": "slimflowers/compare.py",
                "data_service.py": "slimflowers/data_service.py", "demo.py": "slimflowers/demo.py",
                "nets": "nets/__main__.py"}


@pytest.mark.parametrize("program", sorted(ENTRY_POINTS))
def test_every_entry_point_runs_through_cli_run(program):
  """One rule for every program: its __main__ hands main to cli.run (flags parsed by cli.parse_flags, errors as one
  line with their exit code)."""
  with open(os.path.join(REPO, ENTRY_POINTS[program]), encoding="utf-8") as f:
    source = f.read()
  main_block = source[source.index('if __name__ == "__main__":'):]
  assert "cli.run(main)" in main_block and "app.run(" not in main_block


@pytest.fixture(scope="module")
def bad_flags():
  """Programs started with an unknown flag, all at once: the converter, the data service and the demo (quick to
  start; the others share their cli.run, test_every_entry_point_runs_through_cli_run)."""
  started = {program: subprocess.Popen(
      [sys.executable, *(["-m", "slimflowers." + program[:-3]] if "/" in ENTRY_POINTS[program] else [program]),
       "--no_such_flag=1"], cwd=REPO, env=script_env(), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for program in (CONVERT, "data_service.py", "demo.py")}
  return {program: finish(proc, 120) for program, proc in started.items()}


@pytest.mark.parametrize("program", [CONVERT, "data_service.py", "demo.py"])
def test_a_flag_that_does_not_parse_is_one_line_and_exit_2(bad_flags, program):
  assert_user_error(bad_flags[program], program, "Unknown command line flag 'no_such_flag'",
                    f"Run {program} --helpshort for the flags.")


def test_a_bad_flag_value_and_a_missing_required_flag_are_one_line_and_exit_2(capsys, monkeypatch):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from slimflowers.core import cli  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, "argv", ["prog.py"])
  for argv, needle in ((["prog.py", "--where=x", "--steps=many"], "flag --steps=many: invalid literal for int()"),
                       (["prog.py"], "Flag --where must have a value other than None")):
    values = flags.FlagValues()
    flags.DEFINE_integer("steps", 1, "Steps.", flag_values=values)
    flags.DEFINE_string("where", None, "Where.", flag_values=values)
    flags.mark_flag_as_required("where", flag_values=values)
    monkeypatch.setattr(flags, "FLAGS", values)
    with pytest.raises(SystemExit) as e:
      cli.parse_flags(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("prog.py: error: ") and needle in err, err


def test_study_runs_dir_that_is_a_file_is_one_line(data, tmp_path):
  from slimflowers.study import driver as study  # pylint: disable=g-import-not-at-top
  users_file = tmp_path / "runs"
  users_file.write_text("a user's file\n")
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=data["dir"], runs_dir=str(users_file))
  with pytest.raises(errors.UserError) as e:
    study.run_study(cfg, ["cifarnet"])
  assert_refused(e.value, f"--runs_dir={users_file} is a file, not a directory")
  assert users_file.read_text() == "a user's file\n" and sorted(os.listdir(tmp_path)) == ["runs"]


def test_study_refusals_exit_2(tmp_path):
  from slimflowers.study import driver as study  # pylint: disable=g-import-not-at-top
  cfg = study.StudyConfig(dataset_name="folder", dataset_dir=str(tmp_path / "no_such_dataset"),
                          runs_dir=str(tmp_path / "runs"))
  for models, needle in (([], "--models is empty"), (["cifarnet", "cifarnet"], "names a model twice"),
                         (["cifarnet"], "The study needs a converted dataset with a validation split")):
    with pytest.raises(errors.UserError) as e:
      study.run_study(cfg, models)
    assert e.value.exit_code == 2 and needle in str(e.value)
  assert not (tmp_path / "runs").exists()


def test_readme_states_the_exit_codes_the_code_uses():
  from slimflowers.study import children  # pylint: disable=g-import-not-at-top
  from slimflowers.train import preemption
  from slimflowers.study import driver as study
  classes = [errors.UserError, errors.TrainingStopped, verification.VerificationFailed, predict.NothingClassified,
             study.StudyError, study.StudyFailed, children.ChildFailed, preemption.Preempted,
             records.CorruptedShards]
  codes = {c.exit_code for c in classes}
  assert codes == {1, 2, 42}
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  section = readme[readme.index("### Exit codes"):]
  section = section[:section.index("\n## ") if "\n## " in section else len(section)]
  for code in sorted(codes) + [0, "128 + N"]:
    assert f"**{code}**" in section, code


def test_refused_commands_leave_no_empty_directory(tmp_path):
  train_dir = tmp_path / "runs" / "new" / "run"
  with pytest.raises(errors.UserError) as e:
    tiny_data.train(train_dir, tmp_path / "no_such_dataset", max_number_of_steps=1)
  assert e.value.exit_code == 2 and "no_such_dataset does not exist" in str(e.value)
  dataset_dir = tmp_path / "data" / "new"
  with pytest.raises(errors.UserError) as e:
    datasets.convert("folder", str(dataset_dir), source=str(tmp_path / "no_such_photos"), num_workers=1)
  assert_refused(e.value, "no_such_photos does not exist")
  assert sorted(os.listdir(tmp_path)) == []  # neither runs/new/run nor data/new, nor their parents
