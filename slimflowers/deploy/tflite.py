"""TFLite: converting the serving module (float32, float16, dynamic, int8) and running a .tflite with LiteRT.

    content = tflite.convert_tflite(module, "int8", calibration=images_fn)
    logits = tflite.TFLiteModel(model_content=content).logits(preprocessed_images)   # float32 in and out
"""
import contextlib
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf

from slimflowers.core import cli

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def tflite_filename(quantization):
  return f"model_{quantization}.tflite"


@contextlib.contextmanager
def native_stderr_captured():
  """Keeps the TFLite converter's and interpreter's C++ log lines off the console (shown with --verbosity=1).

  They are written to file descriptor 2 directly, past Python's logging; on an error they are replayed.
  """
  if cli.VERBOSE:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    except BaseException:
      os.dup2(saved, 2)
      captured.seek(0)
      sys.stderr.write(captured.read().decode("utf-8", "replace")[-5000:])
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def convert_tflite(module, quantization, calibration=None):
  """The TFLite flatbuffer of `module.tflite_function()`; `calibration()` yields float32 [S, S, 3] images (int8)."""
  converter = tf.lite.TFLiteConverter.from_concrete_functions([module.tflite_function()], module)
  if quantization != "float32":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == "float16":
    converter.target_spec.supported_types = [tf.float16]
  elif quantization == "int8":
    # Full integer (Model Garden's int8_full, TF-Slim's post_training_quantization): uint8 in and out.
    converter.representative_dataset = lambda: ([image[None]] for image in calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
  with native_stderr_captured():
    return converter.convert()


def _tensor_description(details):
  """One TFLite input/output for export.json: name, dtype, shape and (integer tensors) quantization."""
  out = {"dtype": np.dtype(details["dtype"]).name, "shape": [int(d) for d in details["shape_signature"]]}
  if np.issubdtype(details["dtype"], np.integer):
    scale, zero_point = details["quantization"]
    out["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
  return out


class TFLiteModel:
  """A .tflite classifier run with LiteRT: float32 preprocessed images in, float32 logits out (any batch).

  Quantized inputs and outputs are converted with the model's own parameters:
  q = round(x / scale + zero_point) clipped to the dtype, x = (q - zero_point) * scale.
  """

  def __init__(self, model_path=None, model_content=None, num_threads=1):
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=g-import-not-at-top
    with native_stderr_captured():
      self.interpreter = Interpreter(model_path=model_path, model_content=model_content, num_threads=num_threads)
      self.signature, = self.interpreter.get_signature_list()
      self.runner = self.interpreter.get_signature_runner(self.signature)
    (self.input_name, self.input_details), = self.runner.get_input_details().items()
    (self.output_name, self.output_details), = self.runner.get_output_details().items()
    self._called = False

  def describe(self):
    return {"signature": self.signature, "input": {"name": self.input_name, **_tensor_description(
        self.input_details)}, "output": {"name": self.output_name, **_tensor_description(self.output_details)}}

  def logits(self, images):
    x = np.asarray(images, np.float32)
    dtype = self.input_details["dtype"]
    if np.issubdtype(dtype, np.integer):
      scale, zero_point = self.input_details["quantization"]
      info = np.iinfo(dtype)
      x = np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)
    if self._called:
      y = self.runner(**{self.input_name: x})[self.output_name]
    else:
      with native_stderr_captured():  # the first call creates the XNNPACK delegate, which says so on stderr
        y = self.runner(**{self.input_name: x})[self.output_name]
      self._called = True
    if np.issubdtype(y.dtype, np.integer):
      scale, zero_point = self.output_details["quantization"]
      return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return y.astype(np.float32)
