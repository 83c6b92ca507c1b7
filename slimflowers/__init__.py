"""slimflowers: TF-Slim-style image classification on TensorFlow 2.

    make demo   # synthetic_flowers -> TFRecords -> study of small nets -> report

See ARCHITECTURE.md for the module map and the contracts between pieces.
"""
