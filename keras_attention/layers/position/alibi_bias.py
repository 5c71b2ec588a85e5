"""ALiBi: attention with linear biases (Press et al. 2022).

The file name is the snake case of the class name `ALiBiBias`, as the
project's one-layer-per-file convention requires.
"""

import keras
import numpy as np
from keras import ops

from keras_attention.layers.position.position_math import alibi_slopes
from keras_attention.layers.position.position_math import check_start_index
from keras_attention.layers.position.position_math import positions
from keras_attention.layers.position.relative_position_bias import (
    check_query_key_shape,
)
from keras_attention.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class ALiBiBias(keras.layers.Layer):
    """ALiBi: a fixed linear distance penalty per head, added to logits.

    Query `i` and key `j` get the bias `-m_h * |i - j|` on head `h`, with
    the head slopes `m_h` of the paper: the geometric sequence
    `2^(-8/H), 2^(-16/H), ..., 2^(-8)` when `H` is a power of two, otherwise
    the slopes of the closest smaller power of two `p` followed by every
    other slope of the `2p` sequence (`alibi_slopes` in `position_math`).
    There are no weights and no position embeddings: the model extrapolates
    to sequences longer than those it was trained on.

    Causal (decoder) use, as in the paper: combine with a causal mask; for
    the visible keys `j <= i` the bias is `-m_h (i - j)`. Bidirectional
    (encoder) use: without a causal mask the penalty is symmetric in the
    distance. When decoding with a cache, `start_index` is the absolute
    position of the first query and the keys are at positions `0 .. S - 1`,
    so one step of incremental decoding gets the same row as a full pass.
    The bias is computed and returned in float32 under every dtype policy:
    distances times slopes reach values where float16/bfloat16 would round
    away the differences between neighbouring keys, and the attention
    kernels add the bias to float32 logits.

    Shapes: B batch, T query length, S key length, H heads.

    Args:
        num_heads: int, H.

    Call arguments:
        query: `(B, T, ...)` tensor; only its shape is used.
        key: optional `(B, S, ...)` tensor; defaults to `query` (S = T).
        start_index: int or scalar integer tensor, the absolute position of
            the first query (the cache index when decoding). Defaults to 0.

    Returns:
        A float32 `(1, H, T, S)` bias.

    Raises:
        ValueError: if `num_heads` is not a positive integer, `query` or
            `key` has rank < 2, or `start_index` is a negative Python
            integer.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    q = np.zeros((2, 5, 16), "float32")
    k = np.zeros((2, 7, 16), "float32")
    bias = ka.layers.ALiBiBias(num_heads=8)(q, k)
    tuple(bias.shape)  # (1, 8, 5, 7)
    ```

    References:
        - [Press et al., 2022](https://arxiv.org/abs/2108.12409), Train
          Short, Test Long: Attention with Linear Biases, section 3.
    """

    def __init__(self, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.slopes = np.asarray(alibi_slopes(self.num_heads), dtype="float32")
        self.supports_masking = True
        self.built = True

    def call(self, query, key=None, start_index=0):
        check_query_key_shape(query.shape, "query")
        key = query if key is None else key
        check_query_key_shape(key.shape, "key")
        check_start_index(start_index)
        query_pos = positions(ops.shape(query)[1], start_index)  # (T,)
        key_pos = positions(ops.shape(key)[1], 0)  # (S,)
        distance = ops.abs(query_pos[:, None] - key_pos[None, :])  # (T, S)
        slopes = ops.convert_to_tensor(self.slopes, "float32")  # (H,)
        bias = -slopes[:, None, None] * distance[None, :, :]  # (H, T, S)
        return bias[None]  # (1, H, T, S)

    def compute_mask(self, inputs, mask=None):
        # The bias is not per token: a query mask does not carry over.
        return None

    def compute_output_shape(self, query_shape, key_shape=None):
        check_query_key_shape(query_shape, "query")
        check_query_key_shape(key_shape, "key")
        key_shape = query_shape if key_shape is None else key_shape
        return (1, self.num_heads, query_shape[1], key_shape[1])

    def compute_output_spec(self, query, key=None, start_index=0):
        key_shape = None if key is None else key.shape
        shape = self.compute_output_shape(query.shape, key_shape)
        return keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads})
        return config
