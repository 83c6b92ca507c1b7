"""VGG-16 in TF-Slim's fully convolutional layout on keras.applications' VGG16 convolutions.

    model = nets.get_model("vgg_16", 102)   # 134,678,438 trainable parameters, 224 px minimum

TF-Slim's fc6/fc7 are convolutions (7x7 VALID, 1x1), so the net takes any size
>= 224 (larger maps are averaged before the logits, TF-Slim's `global_pool`).
keras.applications' Dense fc1/fc2 weights are the same numbers reshaped
(Flatten is row-major H, W, C), so its full weight files load into fc6/fc7.
Dropout 0.5 after fc6 and fc7 as in TF-Slim (keras.applications' VGG16 has none).
"""
import keras

from nets import nets_utils
from nets import register


@register("vgg_16", default_image_size=224, min_image_size=224, preprocessing="vgg",
          aliases=("vgg16",), keras_application="VGG16", feature_layer="block5_conv3",
          weight_top=(("dense", "fc1", "fc6"), ("dense", "fc2", "fc7"),
                      ("dense", "predictions", "logits")))
def vgg_16(input_shape, num_classes, *, dropout_rate=0.5):
  backbone = nets_utils.application_backbone("VGG16", input_shape)
  x = keras.layers.Conv2D(4096, 7, padding="valid", activation="relu", name="fc6")(backbone.output)
  x = keras.layers.Dropout(dropout_rate, name="dropout6")(x)
  x = keras.layers.Conv2D(4096, 1, activation="relu", name="fc7")(x)
  logits = nets_utils.logits_head(x, num_classes, dropout_rate)
  return keras.Model(backbone.input, logits, name="vgg_16")
