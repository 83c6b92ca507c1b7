"""ResNet v1 (50, 101 layers), keras.applications' ResNet50/ResNet101 with our `logits` head.

    model = nets.get_model("resnet50", 102)   # 23,743,590 trainable parameters

keras.applications' ResNets are the v1 layout (stride 2 in the first 1x1 conv of
a block) with the Caffe-converted ImageNet weights, so they expect caffe
preprocessing ("vgg": RGB->BGR minus ImageNet means).
"""
from nets import nets_utils
from nets import register


def _builder(name, app_name):
  def build(input_shape, num_classes, *, dropout_rate=0.0):
    return nets_utils.application_model(name, app_name, input_shape, num_classes, dropout_rate)
  return build


register("resnet_v1_50", default_image_size=224, min_image_size=32, preprocessing="vgg",
         aliases=("resnet50",), keras_application="ResNet50",
         feature_layer="conv5_block3_out")(_builder("resnet_v1_50", "ResNet50"))
register("resnet_v1_101", default_image_size=224, min_image_size=32, preprocessing="vgg",
         aliases=("resnet101",), keras_application="ResNet101",
         feature_layer="conv5_block3_out")(
             _builder("resnet_v1_101", "ResNet101"))
