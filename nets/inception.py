"""Inception-v3 (with TF-Slim's optional auxiliary head) and Inception-ResNet-v2.

    model = nets.get_model("inception_v3", 102, aux_logits=True)
    out = model(images)   # {"logits": [B, 102], "aux_logits": [B, 102]}

Both build on keras.applications. TF-Slim's AuxLogits head sits on Mixed_6e,
the last 17x17 block, which is keras.applications' layer "mixed7" (Mixed_5b-d
= mixed0-2, Mixed_6a = mixed3, Mixed_6b-e = mixed4-7, Mixed_7a-c = mixed8-10).
The aux head's variables do not depend on the image size (see ReducibleConv),
so it works with `image_size=None` like the rest of the net.
"""
import keras
import tensorflow as tf

from nets import nets_utils
from nets import register


class AuxPool(keras.layers.Layer):
  """TF-Slim's AuxLogits avg-pool 5x5 stride 3 VALID; a map smaller than 5x5 is averaged whole.

  (That is the 5x5 pool with its kernel reduced to the map, as TF-Slim's
  `_reduced_kernel_size_for_small_input` does for the next conv.) Works with
  dynamic image sizes, so one model takes any size >= the net's minimum.
  """

  def call(self, x):
    def pooled():
      return tf.nn.avg_pool2d(x, 5, 3, "VALID")

    def whole():
      return tf.reduce_mean(x, axis=[1, 2], keepdims=True)

    if x.shape[1] is not None and x.shape[2] is not None:
      return pooled() if min(x.shape[1], x.shape[2]) >= 5 else whole()
    shape = tf.shape(x)
    return tf.cond(tf.minimum(shape[1], shape[2]) >= 5, pooled, whole)

  def compute_output_shape(self, input_shape):
    batch, height, width, channels = input_shape
    if height is None or width is None:
      return (batch, None, None, channels)
    if min(height, width) < 5:
      return (batch, 1, 1, channels)
    return (batch, (height - 5) // 3 + 1, (width - 5) // 3 + 1, channels)


class ReducibleConv(keras.layers.Layer):
  """A k x k VALID conv (no bias) whose kernel is center-cropped to a smaller input map.

  TF-Slim's AuxLogits creates a smaller kernel variable when the map is below
  5x5 (`_reduced_kernel_size_for_small_input`); cropping the one 5x5 kernel
  instead keeps the variables independent of the image size, so a model trained
  at 224 px restores at 299 px. At 299 px (5x5 map) it is exactly TF-Slim's conv.
  """

  def __init__(self, filters, kernel_size, kernel_initializer="glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.kernel_initializer = keras.initializers.get(kernel_initializer)

  def build(self, input_shape):
    self.kernel = self.add_weight(
        name="kernel", shape=(self.kernel_size, self.kernel_size, input_shape[-1], self.filters),
        initializer=self.kernel_initializer)

  def call(self, x):
    k = self.kernel_size
    shape = tf.shape(x)
    kh, kw = tf.minimum(k, shape[1]), tf.minimum(k, shape[2])
    top, left = (k - kh) // 2, (k - kw) // 2
    kernel = tf.cast(self.kernel, x.dtype)[top:top + kh, left:left + kw]
    return tf.nn.conv2d(x, kernel, strides=1, padding="VALID")

  def compute_output_shape(self, input_shape):
    batch, height, width, _ = input_shape
    size = lambda d: None if d is None else max(d - self.kernel_size + 1, 1)
    return (batch, size(height), size(width), self.filters)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def _bn_relu(x, name):
  """keras.applications' inception conv2d_bn after the conv: BN without scale, ReLU."""
  x = keras.layers.BatchNormalization(axis=3, scale=False, name=name + "_bn")(x)
  return keras.layers.Activation("relu", name=name + "_relu")(x)


def _aux_logits_head(mixed_6e, num_classes):
  """TF-Slim's inception_v3 AuxLogits: avg-pool 5x5/3 VALID, conv 128 1x1, conv 768 5x5 VALID, conv 1x1.

  At 299 px (17x17 Mixed_6e) it is TF-Slim's head; smaller maps reduce the pool
  and the 5x5 kernel (see AuxPool, ReducibleConv); larger ones average the
  final map (TF-Slim would fail to squeeze it).
  """
  x = AuxPool(name="aux_logits_pool")(mixed_6e)
  x = keras.layers.Conv2D(128, 1, use_bias=False, name="aux_logits_conv_1b_1x1")(x)
  x = _bn_relu(x, "aux_logits_conv_1b_1x1")
  x = ReducibleConv(768, 5, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01),
                    name="aux_logits_conv_2a_5x5")(x)
  x = _bn_relu(x, "aux_logits_conv_2a_5x5")
  x = keras.layers.Conv2D(num_classes, 1, name="aux_logits", dtype="float32",
                          kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.001))(x)
  # Global average, not a squeeze: equal to TF-Slim's squeeze where the map is 1x1 (<= 299 px).
  return keras.layers.GlobalAveragePooling2D(name="aux_logits_squeeze", dtype="float32")(x)


@register("inception_v3", default_image_size=299, min_image_size=75, preprocessing="inception",
          keras_application="InceptionV3",
          overrides=("dropout_rate", "batch_norm_momentum", "batch_norm_epsilon", "aux_logits"),
          feature_layer="mixed10")
def inception_v3(input_shape, num_classes, *, dropout_rate=0.0, aux_logits=False):
  backbone = nets_utils.application_backbone("InceptionV3", input_shape)
  logits = nets_utils.logits_head(backbone.output, num_classes, dropout_rate)
  if not aux_logits:
    return keras.Model(backbone.input, logits, name="inception_v3")
  if num_classes == 0:
    raise ValueError("inception_v3: aux_logits=True needs num_classes > 0 (num_classes=0 returns "
                     "features and has no heads); drop aux_logits or set num_classes.")
  aux = _aux_logits_head(backbone.get_layer("mixed7").output, num_classes)
  return keras.Model(backbone.input, {"logits": logits, "aux_logits": aux}, name="inception_v3")


@register("inception_resnet_v2", default_image_size=299, min_image_size=75,
          preprocessing="inception", aliases=("inception_resnet",),
          keras_application="InceptionResNetV2", feature_layer="conv_7b_ac")
def inception_resnet_v2(input_shape, num_classes, *, dropout_rate=0.0):
  return nets_utils.application_model("inception_resnet_v2", "InceptionResNetV2", input_shape,
                                      num_classes, dropout_rate)
