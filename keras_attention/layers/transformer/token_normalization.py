"""Layer and RMS normalization over the feature axis, computed on rows.

XLA:CPU lowers the gradient of a per-feature scale or offset applied to a
`(B, T, E)` tensor (a sum over `B` and `T`) to a windowed reduction that is
several times slower than the column sum of the same values laid out as a
`(B * T, E)` matrix. These layers normalize the input viewed as that matrix
and reshape back: same weights, configuration and results as the Keras
layers they extend.
"""

import keras
from keras import ops


def _over_rows(layer, call, inputs):
    """`call(inputs)` on `inputs` viewed as `(rows, E)` when `layer`
    normalizes only the last axis of a rank > 2 input."""
    axis = layer.axis
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    rank = len(inputs.shape)
    if rank <= 2 or [a % rank for a in axes] != [rank - 1] or inputs.shape[-1] is None:
        return call(inputs)
    shape = ops.shape(inputs)
    rows = ops.reshape(inputs, (-1, inputs.shape[-1]))  # (B * T, E)
    return ops.reshape(call(rows), shape)


@keras.saving.register_keras_serializable(package="keras_attention")
class LayerNormalization(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` computed on `(rows, E)`.

    Identical results and weights; on XLA:CPU the gradients of `gamma` and
    `beta` are column sums instead of windowed reductions over `(B, T)`.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers.transformer.token_normalization import (
        LayerNormalization,
    )
    x = np.random.rand(2, 5, 8).astype("float32")
    y = LayerNormalization(epsilon=1e-5)(x)
    tuple(y.shape)  # (2, 5, 8)
    ```

    References:
        Ba et al., 2016, "Layer Normalization".
    """

    def call(self, inputs):
        return _over_rows(self, super().call, inputs)


@keras.saving.register_keras_serializable(package="keras_attention")
class RMSNormalization(keras.layers.RMSNormalization):
    """`keras.layers.RMSNormalization` computed on `(rows, E)`.

    Identical results and weights; see `LayerNormalization` in this module.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers.transformer.token_normalization import (
        RMSNormalization,
    )
    x = np.random.rand(2, 5, 8).astype("float32")
    y = RMSNormalization(epsilon=1e-6)(x)
    tuple(y.shape)  # (2, 5, 8)
    ```

    References:
        Zhang and Sennrich, 2019, "Root Mean Square Layer Normalization".
    """

    def call(self, x):
        return _over_rows(self, super().call, x)
