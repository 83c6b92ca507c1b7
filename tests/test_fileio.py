"""Atomic writes and the tolerant readers that go with them."""
import os

import pytest

from slimflowers.core import fileio


def test_atomic_write_leaves_old_file_when_the_writer_fails(tmp_path):
  path = str(tmp_path / "run_info.json")
  fileio.write_json_atomic(path, {"step": 1})
  with pytest.raises(RuntimeError):
    with fileio.atomic_path(path) as tmp:
      with open(tmp, "w", encoding="utf-8") as f:
        f.write('{"step": 2')  # killed half-way
      raise RuntimeError("killed")
  assert fileio.read_json(path) == {"step": 1}
  assert os.listdir(tmp_path) == ["run_info.json"]  # no temporary left behind


def test_read_json_tolerant_and_strict(tmp_path):
  missing, torn, listed = (str(tmp_path / n) for n in ("missing.json", "torn.json", "list.json"))
  (tmp_path / "torn.json").write_text('{"finished": tr')
  (tmp_path / "list.json").write_text("[1, 2]")
  assert fileio.read_json(missing) == {} and fileio.read_json(missing, strict=True) == {}
  assert fileio.read_json(torn) == {} and fileio.read_json(listed) == {}
  with pytest.raises(ValueError, match=r"torn.json is not valid JSON .*Delete it"):
    fileio.read_json(torn, strict=True)
  with pytest.raises(ValueError, match="list.json should hold a JSON object, found list"):
    fileio.read_json(listed, strict=True)


def test_read_jsonl_skips_torn_and_non_object_lines(tmp_path):
  path = str(tmp_path / "results.jsonl")
  for line in ('{"step": 1, "accuracy": 0.5}', '{"step": 2, "accuracy": 0.6}', "[3]"):
    fileio.append_line(path, line)
  with open(path, "a", encoding="utf-8") as f:
    f.write('\n{"step": 3, "accu')  # a killed writer's torn tail
  assert fileio.read_jsonl(path) == [{"step": 1, "accuracy": 0.5}, {"step": 2, "accuracy": 0.6}]
  assert fileio.read_jsonl(str(tmp_path / "none.jsonl")) == []
