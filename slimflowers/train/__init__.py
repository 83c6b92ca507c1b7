"""train: the training program (train_image_classifier.py) and its parts -- flags, trainer, optimizers,
preemption, PreciseBN, HParams, and the run's record (run_record: its flags; run_info: what it wrote).

Imports `core` and `data`."""
