"""CifarNet (TF-Slim's nets/cifarnet.py), the tiny net that trains in seconds for tests and demos.

    model = nets.get_model("cifarnet", 5)   # 32 px by default, any size >= 32

conv 64 5x5, max-pool 2/2, conv 64 5x5, max-pool 2/2, fc 384, dropout, fc 192,
logits, with TF-Slim's initializers. Two changes from TF-Slim, for speed and
variable sizes: no local response normalization, and global average pooling
before fc3 instead of flattening an 8x8 map (fc3 has 64x384 weights, not 4096x384).
num_classes=0 returns fc4's 192 features (TF-Slim's pre-logits).
"""
import keras

from nets import register


@register("cifarnet", default_image_size=32, min_image_size=32, preprocessing="cifarnet",
          overrides=("dropout_rate",), weight_top=(("dense", "logits", "logits"),), feature_layer="conv2")
def cifarnet(input_shape, num_classes, *, dropout_rate=0.5):
  conv_init = keras.initializers.TruncatedNormal(stddev=5e-2)
  fc_init = keras.initializers.TruncatedNormal(stddev=0.04)
  fc_bias = keras.initializers.Constant(0.1)
  inputs = keras.Input(input_shape, name="images")
  x = keras.layers.Conv2D(64, 5, padding="same", activation="relu", kernel_initializer=conv_init,
                          name="conv1")(inputs)
  x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name="pool1")(x)
  x = keras.layers.Conv2D(64, 5, padding="same", activation="relu", kernel_initializer=conv_init,
                          name="conv2")(x)
  x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name="pool2")(x)
  x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
  x = keras.layers.Dense(384, activation="relu", kernel_initializer=fc_init,
                         bias_initializer=fc_bias, name="fc3")(x)
  x = keras.layers.Dropout(dropout_rate, name="dropout3")(x)
  x = keras.layers.Dense(192, activation="relu", kernel_initializer=fc_init,
                         bias_initializer=fc_bias, name="fc4")(x)
  if num_classes == 0:
    return keras.Model(inputs, x, name="cifarnet")
  logits = keras.layers.Dense(num_classes, name="logits", dtype="float32",
                              kernel_initializer=keras.initializers.TruncatedNormal(stddev=1 / 192.0),
                              bias_initializer="zeros")(x)
  return keras.Model(inputs, logits, name="cifarnet")
