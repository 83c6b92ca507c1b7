"""eval: exact evaluation and the evaluation program (eval_image_classifier.py) -- metrics, the believability
check (sanity), the evaluator's outputs and its continuous loop.

Imports `core`, `data` and `train` (the run record)."""
