"""`python -m slimflowers.study`; the code is slimflowers/study/driver.py (its docstring, set below, is what
--help prints)."""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)
from absl import flags  # pylint: disable=g-bad-import-order
from slimflowers.study import driver

__doc__ = driver.__doc__
main = driver.main

if __name__ == "__main__":
  driver.define_flags()
  flags.adopt_module_key_flags(driver)  # --help lists them (they are this program's flags)
  cli.run(main)
