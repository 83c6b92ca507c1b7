"""Session-wide test setup: two logical CPU devices, shared tiny datasets, and a guard against a run with no test.

Two logical CPUs let in-process tests run the multi-replica code (MirroredStrategy over
/cpu:0 and /cpu:1) without a subprocess per run; they must be configured before any
TensorFlow op, hence here. Datasets are converted once per session, in-process (the
converter's own tests run the script).
"""
import pytest

from slimflowers.core import devices

devices.split_cpu(2)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
  """3 classes x 12 tiny JPEGs: train 27 / validation 9 (a converted `folder` dataset)."""
  from tests import tiny_data  # pylint: disable=g-import-not-at-top
  return tiny_data.make_dataset(tmp_path_factory.mktemp("tiny_dataset"), num_classes=3, per_class=12)


@pytest.fixture(scope="session")
def tiny_dataset_with_test(tmp_path_factory):
  """3 classes x 12 tiny 32 px JPEGs: train 18 / validation 9 / test 9."""
  from tests import tiny_data  # pylint: disable=g-import-not-at-top
  return tiny_data.make_dataset(tmp_path_factory.mktemp("tiny_dataset_with_test"), num_classes=3, per_class=12,
                                validation_size=0.25, test_size=0.25, size=32)


# The longest files first (their seconds in make test, 2026-11-28: 170, 154, 110, 79, 69, 60, 57, 43), so the two
# pytest-xdist workers (--dist loadfile: a file at a time, in collection order) end together instead of one
# running test_train.py alone at the end. Files not listed follow in their usual order.
LONGEST_FILES_FIRST = ("test_train.py", "test_nets_weights.py", "test_safety.py", "test_study.py",
                       "test_safety_round3.py", "test_multiworker.py", "test_cluster.py", "test_preprocessing.py",
                       "test_nets.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


def pytest_sessionfinish(session, exitstatus):
  """`make test` must fail loudly when nothing ran (a broken collection, a wrong -k)."""
  if session.testscollected == 0 and exitstatus == 0:
    session.exitstatus = 5
