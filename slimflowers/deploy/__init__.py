"""deploy: a trained checkpoint put to use -- the model source, the serving module, TFLite, verification,
the export program (export_image_classifier.py) and predict (predict_image_classifier.py).

Imports `core`, `data` and `eval`."""
