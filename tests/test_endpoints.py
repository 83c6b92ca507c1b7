"""nets.endpoints_model: TF-Slim-style end_points over the registry's Keras models."""
import numpy as np
import pytest

import nets


@pytest.mark.parametrize("name,size,expected_blocks", [
    ("cifarnet", 32, [32, 16, 8]),  # conv1 (SAME), pool1, pool2
    ("mobilenet_v1_025", 64, [32, 16, 8, 4, 2]),
    ("resnet_v1_50", 64, [32, 16, 8, 4, 2]),
])
def test_default_endpoints_one_per_resolution_then_pooled_and_logits(name, size, expected_blocks):
  model = nets.get_model(name, 7)
  ends = nets.endpoints_model(model, image_size=size)
  images = np.random.RandomState(0).uniform(-1, 1, (2, size, size, 3)).astype("float32")
  out = ends(images, training=False)
  blocks = [k for k in out if k.startswith("block_")]
  assert [int(k.split("_")[1].split("x")[0]) for k in blocks] == expected_blocks
  for k in blocks:
    assert out[k].shape[0] == 2 and out[k].shape[1] == out[k].shape[2]
  assert "pooled" in out
  np.testing.assert_allclose(np.asarray(out["logits"]), np.asarray(model(images, training=False)), rtol=1e-5,
                             atol=1e-5)


def test_named_endpoints_and_unknown_name():
  model = nets.get_model("resnet_v1_50", 3)
  out = nets.endpoints_model(model, ["conv2_block3_out", "logits"])(np.zeros([1, 64, 64, 3], np.float32))
  assert set(out) == {"conv2_block3_out", "logits"} and out["conv2_block3_out"].shape == (1, 16, 16, 256)
  with pytest.raises(ValueError, match="no layer 'conv9'"):
    nets.endpoints_model(model, ["conv9"])
