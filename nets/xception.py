"""Xception, keras.applications' Xception with our `logits` head.

    model = nets.get_model("xception", 102)   # 21,015,950 trainable parameters
"""
from nets import nets_utils
from nets import register


@register("xception", default_image_size=299, min_image_size=71, preprocessing="inception",
          keras_application="Xception", feature_layer="block14_sepconv2_act")
def xception(input_shape, num_classes, *, dropout_rate=0.0):
  return nets_utils.application_model("xception", "Xception", input_shape, num_classes,
                                      dropout_rate)
