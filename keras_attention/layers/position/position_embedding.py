"""Learned absolute position embedding."""

import keras
from keras import ops

from keras_attention.layers.position.position_math import check_start_index
from keras_attention.layers.position.position_math import check_static_last_dim
from keras_attention.layers.position.position_math import static_start_index
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_last_dim
from keras_attention.utils.validation import check_rank


def check_fits_table(length, start_index, sequence_length):
    """Raise if positions `start_index .. start_index + length - 1` overflow.

    Only static values are checked: `length` may be `None` and
    `start_index` a tensor, in which case nothing can be said before run
    time.
    """
    start = static_start_index(start_index)
    if length is None or start is None:
        return
    if start + length > sequence_length:
        raise ValueError(
            "Received an invalid value for argument `sequence_length`, "
            f"expected at least start_index + sequence length = {start} + "
            f"{length} = {start + length} positions. Received: "
            f"sequence_length={sequence_length}"
        )


@keras.saving.register_keras_serializable(package="keras_attention")
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embedding.

    A trainable `(sequence_length, D)` table whose row `t` is the embedding
    of position `t` (as in BERT and GPT). The layer returns the rows for the
    positions `start_index, ..., start_index + T - 1` broadcast over the
    batch, to be added to `inputs`. `D` is taken from the last axis of
    `inputs` when the layer is built. An incoming Keras mask is passed
    through unchanged.

    Positions past the table are an error: with a static `T` and a Python
    `start_index`, `start_index + T > sequence_length` raises a `ValueError`.
    A tensor `start_index` (a decoding loop's cache index) cannot be checked
    before run time; keep it below `sequence_length - T + 1`.

    Shapes: B batch, T sequence length, D features.

    Args:
        sequence_length: int, the number of positions in the table (the
            maximum sequence length).
        initializer: initializer of the table.

    Call arguments:
        inputs: `(B, T, D)` tensor; only its shape is used.
        start_index: int or scalar integer tensor, the position of the first
            token (the cache index when decoding). Defaults to 0.

    Returns:
        The `(B, T, D)` position embeddings in the layer's compute dtype.

    Raises:
        ValueError: if `sequence_length` is not a positive integer, `inputs`
            is not rank 3 with a known last axis, or the positions run past
            `sequence_length`.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    x = np.zeros((2, 5, 8), "float32")
    pe = ka.layers.PositionEmbedding(sequence_length=16)(x)
    tuple(pe.shape)  # (2, 5, 8)
    ```

    References:
        - [Devlin et al., 2019](https://arxiv.org/abs/1810.04805)
          (learned positions, BERT);
          [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762),
          section 3.5 (learned vs sinusoidal).
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = check_positive_int(sequence_length, "sequence_length")
        self.initializer = keras.initializers.get(initializer)
        self.supports_masking = True

    def build(self, input_shape):
        check_rank(input_shape, "inputs", 3)
        dim = check_static_last_dim(input_shape, "inputs")
        check_fits_table(input_shape[1], 0, self.sequence_length)
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, dim),
            initializer=self.initializer,
            trainable=True,
        )
        self.built = True

    def call(self, inputs, start_index=0):
        check_start_index(start_index)
        check_rank(tuple(inputs.shape), "inputs", 3)
        check_last_dim(tuple(inputs.shape), "inputs", self.embeddings.shape[-1])
        check_fits_table(inputs.shape[1], start_index, self.sequence_length)
        shape = ops.shape(inputs)
        table = ops.convert_to_tensor(self.embeddings)  # (sequence_length, D)
        rows = ops.slice(
            table, [ops.cast(start_index, "int32"), 0], [shape[1], table.shape[1]]
        )  # (T, D)
        rows = ops.cast(rows, self.compute_dtype)
        return ops.broadcast_to(rows[None, :, :], shape)  # (B, T, D)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
