"""`python -m slimflowers.compare`: the report of runs; the code is slimflowers/study/compare.py (its docstring,
set below, is what --help prints)."""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)
from absl import flags  # pylint: disable=g-bad-import-order
from slimflowers.study import compare

__doc__ = compare.__doc__
main = compare.main

if __name__ == "__main__":
  compare.define_flags()
  flags.adopt_module_key_flags(compare)  # --help lists them (they are this program's flags)
  cli.run(main)
