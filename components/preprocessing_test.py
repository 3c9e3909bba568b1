import numpy as np
import tensorflow as tf

from components import features
from components.preprocessing import preprocessing_fn


def test_preprocessing_scales_to_unit_range_and_reshapes_to_28x28x1() -> None:
    pixels = np.arange(2 * 784, dtype=np.int64).reshape(2, 784) % 256
    out = preprocessing_fn(
        {
            features.IMAGE_KEY: tf.constant(pixels),
            features.LABEL_KEY: tf.constant([[3], [7]], tf.int64),
        }
    )
    image = out[features.IMAGE_KEY].numpy()
    assert image.shape == (2, 28, 28, 1) and image.dtype == np.float32
    np.testing.assert_allclose(image[..., 0], pixels.reshape(2, 28, 28) / 255.0, rtol=1e-6)
    assert image.min() == 0.0 and image.max() == 1.0
    assert out[features.LABEL_KEY].numpy().tolist() == [3, 7]
