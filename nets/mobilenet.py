"""MobileNet v1 (depth multipliers 1.0, 0.75, 0.5, 0.25) and v2, from keras.applications.

    model = nets.get_model("mobilenet", 102)   # mobilenet_v1: 3,311,526 trainable parameters

MobileNet v1's top is reproduced exactly (pool keeping dims -> dropout 1e-3 ->
1x1 conv -> reshape) so keras.applications' `conv_preds` weights load into our
`logits` conv.
"""
from nets import nets_utils
from nets import register

_V1_TOP = (("conv2d", "conv_preds", "logits"),)


def _mobilenet_v1(name, alpha):
  def build(input_shape, num_classes, *, dropout_rate=1e-3):
    return nets_utils.application_model(name, "MobileNet", input_shape, num_classes, dropout_rate,
                                        conv_head=True, alpha=alpha)
  return build


for _name, _alpha, _aliases in (("mobilenet_v1", 1.0, ("mobilenet",)),
                                ("mobilenet_v1_075", 0.75, ()),
                                ("mobilenet_v1_050", 0.5, ()),
                                ("mobilenet_v1_025", 0.25, ())):
  register(_name, default_image_size=224, min_image_size=32, preprocessing="inception",
           aliases=_aliases, keras_application="MobileNet", weight_top=_V1_TOP, feature_layer="conv_pw_13_relu")(
               _mobilenet_v1(_name, _alpha))


@register("mobilenet_v2", default_image_size=224, min_image_size=32, preprocessing="inception",
          keras_application="MobileNetV2", feature_layer="out_relu")
def mobilenet_v2(input_shape, num_classes, *, dropout_rate=0.0):
  return nets_utils.application_model("mobilenet_v2", "MobileNetV2", input_shape, num_classes,
                                      dropout_rate)
