"""AlexNet v2 in TF-Slim's layout (nets/alexnet.py of tensorflow/models research/slim).

    model = nets.get_model("alexnet", 102)   # alexnet_v2: 46,624,806 trainable parameters

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


@register("alexnet_v2", default_image_size=224, min_image_size=195, preprocessing="inception",
          aliases=("alexnet",), overrides=("dropout_rate",),
          weight_top=(("dense", "logits", "logits"),))
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
