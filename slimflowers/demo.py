"""`python -m slimflowers.demo` (`make demo`); the code is slimflowers/study/demo.py (its docstring, set below, is
what --help prints)."""
from slimflowers.core import cli  # pylint: disable=g-bad-import-order  (first: quiets TensorFlow before it loads)
from slimflowers.study import demo

__doc__ = demo.__doc__
main = demo.main

if __name__ == "__main__":
  cli.run(main)
