"""Session-wide test setup: two logical CPU devices, shared tiny datasets, and a guard against a run with no test.

Two logical CPUs let in-process tests run the multi-replica code (MirroredStrategy over
/cpu:0 and /cpu:1) without a subprocess per run; they must be configured before any
TensorFlow op, hence here. Datasets are converted once per session, in-process (the
converter's own tests run the script).
"""
import pytest

from slimflowers import devices

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


def pytest_sessionfinish(session, exitstatus):
  """`make test` must fail loudly when nothing ran (a broken collection, a wrong -k)."""
  if session.testscollected == 0 and exitstatus == 0:
    session.exitstatus = 5
