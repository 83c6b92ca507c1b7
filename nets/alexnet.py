"""AlexNet twice: the study's Keras AlexNet (`alexnet`) and TF-Slim's alexnet_v2.

    model = nets.get_model("alexnet", 102)      # the study's: 22,000,294 trainable parameters
    model = nets.get_model("alexnet_v2", 102)   # TF-Slim's: 46,624,806 trainable parameters

`alexnet` is the common Keras AlexNet whose count matches the study's table exactly
(SOURCES.md §1, 224 px, Keras' default 'valid' padding everywhere): conv 96
11x11/4, BN, max-pool 3/2; conv 256 5x5, BN, max-pool; conv 384, 384, 256 3x3, BN,
max-pool (-> 1x1x256 at 224 px); fc 4096, dropout 0.5, fc 4096, dropout 0.5, logits.
The Flatten of a 1x1 map is written as a global average (identical at 224 px), so the
net also takes larger images, like the others. Preprocessing: [-1, 1] (inception), as
the study's Keras pipeline scaled its inputs.

alexnet_v2 is TF-Slim's nets/alexnet.py layout:

conv 64 11x11/4 VALID, max-pool 3/2, conv 192 5x5, max-pool, conv 384, 384,
256 3x3, max-pool, then the "fully connected" layers as convolutions: fc6 4096
5x5 VALID, fc7 4096 1x1, logits; ReLU, biases 0.1 (logits 0), dropout 0.5.
fc6's 5x5 VALID kernel needs a 5x5 pool5 map, i.e. images >= 195 px; larger
images give larger maps, averaged after fc7 (TF-Slim's `global_pool=True`), so
the parameter count does not depend on the image size and equals TF-Slim's at 224.
keras.applications has no AlexNet, so there are no ImageNet weight files for it.
"""
import keras

from nets import nets_utils
from nets import register


@register("alexnet", default_image_size=224, min_image_size=195, preprocessing="inception",
          weight_top=(("dense", "logits", "logits"),), feature_layer="bn5")
def alexnet(input_shape, num_classes, *, dropout_rate=0.5):
  """The study's AlexNet (see the module doc); num_classes=0 returns fc7's 4096 features."""
  inputs = keras.Input(input_shape, name="images")
  x = keras.layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(inputs)
  x = keras.layers.BatchNormalization(name="bn1")(x)
  x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
  x = keras.layers.Conv2D(256, 5, activation="relu", name="conv2")(x)
  x = keras.layers.BatchNormalization(name="bn2")(x)
  x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
  x = keras.layers.Conv2D(384, 3, activation="relu", name="conv3")(x)
  x = keras.layers.Conv2D(384, 3, activation="relu", name="conv4")(x)
  x = keras.layers.Conv2D(256, 3, activation="relu", name="conv5")(x)
  x = keras.layers.BatchNormalization(name="bn5")(x)
  x = keras.layers.MaxPooling2D(3, strides=2, name="pool5")(x)
  x = keras.layers.GlobalAveragePooling2D(name="flatten")(x)  # = Flatten of the 1x1x256 map at 224 px
  x = keras.layers.Dense(4096, activation="relu", name="fc6")(x)
  x = keras.layers.Dropout(dropout_rate, name="dropout6")(x)
  x = keras.layers.Dense(4096, activation="relu", name="fc7")(x)
  x = keras.layers.Dropout(dropout_rate, name="dropout7")(x)
  if num_classes == 0:
    return keras.Model(inputs, x, name="alexnet")
  logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(x)
  return keras.Model(inputs, logits, name="alexnet")


# TF-Slim users run alexnet_v2 with --preprocessing_name=vgg (it is not in TF-Slim's preprocessing_fn_map).
@register("alexnet_v2", default_image_size=224, min_image_size=195, preprocessing="vgg",
          overrides=("dropout_rate",),
          weight_top=(("dense", "logits", "logits"),), feature_layer="conv5")
def alexnet_v2(input_shape, num_classes, *, dropout_rate=0.5):
  bias = keras.initializers.Constant(0.1)
  fc_init = keras.initializers.TruncatedNormal(stddev=0.005)

  def conv(x, filters, kernel, name, strides=1, padding="same", kernel_initializer="glorot_uniform"):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                               activation="relu", bias_initializer=bias,
                               kernel_initializer=kernel_initializer, name=name)(x)

  def pool(x, name):
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)

  inputs = keras.Input(input_shape, name="images")
  x = conv(inputs, 64, 11, "conv1", strides=4, padding="valid")
  x = pool(x, "pool1")
  x = conv(x, 192, 5, "conv2")
  x = pool(x, "pool2")
  x = conv(x, 384, 3, "conv3")
  x = conv(x, 384, 3, "conv4")
  x = conv(x, 256, 3, "conv5")
  x = pool(x, "pool5")
  x = conv(x, 4096, 5, "fc6", padding="valid", kernel_initializer=fc_init)
  x = keras.layers.Dropout(dropout_rate, name="dropout6")(x)
  x = conv(x, 4096, 1, "fc7", kernel_initializer=fc_init)
  logits = nets_utils.logits_head(x, num_classes, dropout_rate, kernel_initializer=fc_init)
  return keras.Model(inputs, logits, name="alexnet_v2")
