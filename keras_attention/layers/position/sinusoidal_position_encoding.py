"""Fixed sinusoidal position encoding (Vaswani et al. 2017)."""

import keras
from keras import ops

from keras_attention.layers.position.position_math import check_start_index
from keras_attention.layers.position.position_math import check_static_last_dim
from keras_attention.layers.position.position_math import sinusoidal_encoding
from keras_attention.utils.validation import check_positive_float
from keras_attention.utils.validation import check_rank


@keras.saving.register_keras_serializable(package="keras_attention")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Fixed sinusoidal position encoding of "Attention Is All You Need".

    Returns the encoding for the positions of `inputs`, to be added to them:
    with the paper's interleaving, feature `2i` of position `pos` is
    `sin(pos / max_wavelength^(2i / D))` and feature `2i + 1` is
    `cos(pos / max_wavelength^(2i / D))`. There is no table: any sequence
    length works, and `start_index` shifts the positions for incremental
    decoding. An odd `D` ends with a lone sine feature. The encoding is
    computed in float32 and returned in the layer's compute dtype. The layer
    has no weights; an incoming Keras mask is passed through unchanged.

    Shapes: B batch, T sequence length, D features.

    Args:
        max_wavelength: float, the longest wavelength of the geometric
            progression (10000 in the paper).

    Call arguments:
        inputs: `(B, T, D)` tensor; only its shape is used.
        start_index: int or scalar integer tensor, the position of the first
            token (the cache index when decoding). Defaults to 0.

    Returns:
        The `(B, T, D)` encoding, broadcast to the shape of `inputs`.

    Raises:
        ValueError: if `max_wavelength` is not positive, `inputs` is not rank
            3 with a known last axis, or `start_index` is a negative Python
            integer.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    x = np.zeros((2, 5, 8), "float32")
    pe = ka.layers.SinusoidalPositionEncoding()(x)
    tuple(pe.shape)  # (2, 5, 8)
    ```

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762),
          section 3.5.
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = check_positive_float(max_wavelength, "max_wavelength")
        self.supports_masking = True
        self.built = True

    def _check_shape(self, shape):
        check_rank(shape, "inputs", 3)
        return check_static_last_dim(shape, "inputs")

    def call(self, inputs, start_index=0):
        dim = self._check_shape(inputs.shape)
        check_start_index(start_index)
        shape = ops.shape(inputs)
        encoding = sinusoidal_encoding(
            shape[1], dim, start_index, self.max_wavelength
        )  # (T, D)
        encoding = ops.cast(encoding, self.compute_dtype)
        return ops.broadcast_to(encoding[None, :, :], shape)  # (B, T, D)

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config
