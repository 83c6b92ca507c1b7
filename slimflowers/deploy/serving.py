"""The SavedModel's serving module: four signatures over one Keras model, the preprocessing inside the graph.

    module = serving.ServingModule(model, class_names=names, image_size=224, preprocessing_name="inception", top_k=5)
    serving.save_saved_model(module, "exports/x/saved_model")   # loads with tf.saved_model.load alone

Every signature returns `logits`, `probabilities` [N, C] float32, `top_k_classes` int32, `top_k_probabilities`,
`top_k_labels` [N, k]: `serving_default` (image_bytes: JPEG/PNG/GIF/BMP/WebP contents), `serving_images` (uint8
[N, H, W, 3]), `serving_examples` (serialized tf.Example with `image/encoded`) and `serving_preprocessed` (float32
[N, S, S, 3], what the TFLite models take). JPEG bytes go through `preprocessing.preprocess_eval` (the evaluator's
recipe, decoding only the crop), other formats and uint8 tensors through `preprocessing.preprocess_eval_image`.
predict_image_classifier.py preprocesses files with the same `preprocess_image_bytes`.
"""

from absl import logging
import tensorflow as tf

from slimflowers.data import preprocessing
from slimflowers.eval import exact as exact_eval
from slimflowers.eval import metrics

SAVED_MODEL_SUBDIR = "saved_model"


SIGNATURES = ("serving_default", "serving_images", "serving_examples", "serving_preprocessed")


TFLITE_INPUT = "preprocessed_images"


TFLITE_OUTPUT = "logits"


def preprocess_image_bytes(image_bytes, image_size, preprocessing_name):
  """Encoded image -> the evaluator's float32 [S, S, 3]: JPEG as the evaluator decodes it, other formats as pixels."""
  def jpeg():
    return preprocessing.preprocess_eval(image_bytes, image_size, preprocessing_name)

  def other():
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return preprocessing.preprocess_eval_image(image, image_size, preprocessing_name)

  return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)


def preprocess_batch(image_bytes, image_size, preprocessing_name):
  """string [N] -> float32 [N, S, S, 3]; an undecodable image fails the batch with a message naming its index.

  A plain map would fail with the decoder's message and no index. Here tf.data drops the images that
  fail (ignore_errors), and the indices that did not come through are named in the assertion.
  """
  n = tf.shape(image_bytes, out_type=tf.int64)[0]
  decoded = (tf.data.Dataset.from_tensor_slices(image_bytes).enumerate()
             .map(lambda i, data: (i, preprocess_image_bytes(data, image_size, preprocessing_name)),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
             .ignore_errors().batch(tf.maximum(n, 1)))
  # A sentinel so that an all-bad (or empty) batch still yields one element.
  empty = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int64), tf.zeros([0, image_size, image_size, 3])))
  indices, images = decoded.concatenate(empty).take(1).get_single_element()
  missing = tf.sparse.to_dense(tf.sets.difference(tf.range(n)[None], indices[None]))[0]
  message = tf.strings.format("Undecodable image(s) at batch index {} (batch size {}): not a JPEG, PNG, GIF, BMP or "
                              "WebP image, or truncated.", (missing, n), summarize=-1)
  check = tf.debugging.Assert(tf.equal(tf.size(missing), 0), [message], summarize=-1)
  with tf.control_dependencies([check]):
    return tf.identity(images)


class ServingModule(tf.Module):
  """What the SavedModel holds: the four signatures over one Keras model, preprocessing inside the graph."""

  def __init__(self, model, *, class_names, image_size, preprocessing_name, top_k):
    super().__init__()
    # The Keras 3 model is hidden from tf.Module's tracking and its raw tf.Variables are tracked instead:
    # tracking the model itself saves fine, but TFLite conversion then keeps VAR_HANDLE ops and the
    # converted model outputs NaN (TF 2.20, checked).
    object.__setattr__(self, "_model", model)
    self.model_variables = [v.value for v in model.variables]
    self._class_names = tf.constant(list(class_names))
    self.image_size, self.preprocessing_name = int(image_size), preprocessing_name
    self.top_k = metrics.effective_top_k(len(class_names), top_k)
    size = self.image_size
    self.serving_default = tf.function(
        self._from_bytes, input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    self.serving_images = tf.function(
        self._from_images, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    self.serving_examples = tf.function(
        self._from_examples, input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    self.serving_preprocessed = tf.function(
        self._outputs, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=TFLITE_INPUT)])

  def signatures(self):
    return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}

  def tflite_function(self):
    """serving_preprocessed with the logits only (what a phone app calls; softmax is one line there)."""
    size = self.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name=TFLITE_INPUT)])
    def logits(images):
      return {TFLITE_OUTPUT: self._logits(images)}

    return logits.get_concrete_function()

  def _logits(self, images):
    return exact_eval.inference_logits(self._model, images)

  def _outputs(self, images):
    logits = self._logits(images)
    probabilities = tf.nn.softmax(logits, axis=-1)
    top_p, top_i = tf.math.top_k(probabilities, k=self.top_k)
    return {"logits": logits, "probabilities": probabilities, "top_k_classes": tf.cast(top_i, tf.int32),
            "top_k_probabilities": top_p, "top_k_labels": tf.gather(self._class_names, top_i)}

  def _from_bytes(self, image_bytes):
    return self._outputs(preprocess_batch(image_bytes, self.image_size, self.preprocessing_name))

  def _from_images(self, images):
    size, name = self.image_size, self.preprocessing_name
    return self._outputs(tf.map_fn(lambda image: preprocessing.preprocess_eval_image(image, size, name), images,
                                   fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32)))

  def _from_examples(self, examples):
    features = tf.io.parse_example(examples, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})
    return self._from_bytes(features["image/encoded"])


def save_saved_model(module, directory):
  tf.saved_model.save(module, directory, signatures=module.signatures())


def resolve_top_k(top_k, num_classes):
  """--top_k: unset, metrics.TOP_K (5) or the number of classes when fewer; a larger k asked for is clamped to
  the number of classes, and the log says so."""
  if top_k is None:
    return metrics.effective_top_k(num_classes)
  if top_k > num_classes:
    logging.warning("--top_k=%d exceeds the model's %d classes: the top-k outputs hold %d.", top_k, num_classes,
                    num_classes)
  return metrics.effective_top_k(num_classes, top_k)
