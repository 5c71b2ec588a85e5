"""Rotary position embedding (RoPE, Su et al. 2021)."""

import math

import keras
from keras import ops

from keras_attention.layers.position.position_math import check_start_index
from keras_attention.layers.position.position_math import check_static_last_dim
from keras_attention.layers.position.position_math import positions
from keras_attention.utils.validation import check_positive_float


@keras.saving.register_keras_serializable(package="keras_attention")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding (RoPE) of RoFormer.

    Rotates each pair of features `(x[2i], x[2i + 1])` of the token at
    position `m` by the angle `m * theta_i`, with
    `theta_i = max_wavelength^(-2i / D)` (the paper's interleaved pairing,
    RoFormer eq. 34):

    ```
    y[2i]     = x[2i] cos(m theta_i) - x[2i + 1] sin(m theta_i)
    y[2i + 1] = x[2i] sin(m theta_i) + x[2i + 1] cos(m theta_i)
    ```

    Applied to queries and keys, the dot product of a query at position `m`
    and a key at position `n` depends on `m - n` only. Positions run along
    axis 1 and features along the last axis, so `(B, T, H, D)` heads inside
    an attention layer and `(B, T, D)` sequences both work. `scaling_factor`
    > 1 divides the positions (linear position interpolation) to stretch a
    model to longer contexts. The angles are computed in float32 and the
    rotation in the layer's compute dtype. The layer has no weights; a Keras
    mask is passed through.

    Shapes: B batch, T sequence length, H heads, D features (even).

    Args:
        max_wavelength: float, the base of the geometric frequencies (10000
            in the paper).
        scaling_factor: float, positions are divided by it (1 = no scaling).

    Call arguments:
        inputs: `(B, T, ..., D)` tensor, e.g. `(B, T, H, D)` queries or keys.
        start_index: int or scalar integer tensor, the position of the first
            token (the cache index when decoding). Defaults to 0.

    Returns:
        The rotated tensor, same shape as `inputs`, in the compute dtype.

    Raises:
        ValueError: if `max_wavelength` or `scaling_factor` is not positive,
            `inputs` has rank < 3, an unknown or odd last axis, or
            `start_index` is a negative Python integer.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    q = np.random.rand(2, 5, 4, 8).astype("float32")  # (B, T, H, D)
    q_rot = ka.layers.RotaryEmbedding()(q)
    tuple(q_rot.shape)  # (2, 5, 4, 8)
    ```

    References:
        - [Su et al., 2021](https://arxiv.org/abs/2104.09864), RoFormer,
          section 3.4.2.
        - [Chen et al., 2023](https://arxiv.org/abs/2306.15595), position
          interpolation (`scaling_factor`).
    """

    def __init__(self, max_wavelength=10000, scaling_factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = check_positive_float(max_wavelength, "max_wavelength")
        self.scaling_factor = check_positive_float(scaling_factor, "scaling_factor")
        self.supports_masking = True
        self.built = True

    def _check_shape(self, shape):
        if len(shape) < 3:
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected a "
                "tensor of rank >= 3 (batch, sequence, ..., features). "
                f"Received: inputs.shape={tuple(shape)}"
            )
        dim = check_static_last_dim(shape, "inputs")
        if dim % 2:
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected an "
                "even feature size (last axis), since features are rotated "
                f"in pairs. Received: inputs.shape={tuple(shape)}"
            )
        return dim

    def call(self, inputs, start_index=0):
        dim = self._check_shape(inputs.shape)
        check_start_index(start_index)
        rank = len(inputs.shape)
        shape = ops.shape(inputs)
        half = dim // 2
        pos = positions(shape[1], start_index) / self.scaling_factor  # (T,)
        exponent = ops.arange(half, dtype="float32") * (2.0 / dim)  # (D/2,)
        theta = ops.exp(-math.log(self.max_wavelength) * exponent)  # (D/2,)
        angles = pos[:, None] * theta[None, :]  # (T, D/2)
        middle = (1,) * (rank - 3)  # one axis per head-like axis
        angles = ops.reshape(angles, (1, -1, *middle, half))  # (1, T, 1.., D/2)
        cos = ops.cast(ops.cos(angles), self.compute_dtype)
        sin = ops.cast(ops.sin(angles), self.compute_dtype)
        x = ops.cast(inputs, self.compute_dtype)
        pairs = ops.reshape(x, [*shape[:-1], half, 2])  # (B, T, ..., D/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]  # (B, T, ..., D/2)
        rotated = ops.stack(
            [even * cos - odd * sin, even * sin + odd * cos], axis=-1
        )  # (B, T, ..., D/2, 2)
        return ops.reshape(rotated, shape)  # (B, T, ..., D)

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_wavelength": self.max_wavelength,
                "scaling_factor": self.scaling_factor,
            }
        )
        return config
