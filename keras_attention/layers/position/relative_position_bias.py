"""T5 relative position bias (bucketed relative positions, one scalar per head)."""

import numbers

import keras
from keras import ops

from keras_attention.layers.position.position_math import check_start_index
from keras_attention.layers.position.position_math import positions
from keras_attention.layers.position.position_math import t5_relative_position_bucket
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_int


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_query_key_shape(shape, name):
    """`shape` must be `(B, L, ...)`: rank >= 2, positions on axis 1."""
    if shape is not None and len(shape) < 2:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            "tensor of rank >= 2 with positions on axis 1. Received: "
            f"{name}.shape={tuple(shape)}"
        )


@keras.saving.register_keras_serializable(package="keras_attention")
class RelativePositionBias(keras.layers.Layer):
    """Learned relative position bias of T5, added to attention logits.

    Each query/key pair gets the learned scalar of its head and of the
    bucket of its relative position `key_position - query_position`
    (`t5_relative_position_bucket` in `position_math`): small distances have
    their own bucket, larger ones share logarithmically wider buckets up to
    `max_distance`. With `bidirectional=True` (encoders) past and future keys
    use separate buckets; with `bidirectional=False` (decoders) all future
    keys share one bucket, which the causal mask hides anyway. The table has
    `num_buckets x num_heads` weights and is shared by every position, so any
    length works.

    The result `(1, H, T, S)` is meant for the `bias` of attention (e.g.
    `keras_attention.ops.scaled_dot_product_attention`). When decoding with
    a cache, `start_index` is the absolute position of the first query and
    the keys are at positions `0 .. S - 1`. The bias is returned in float32
    under every dtype policy (its table is read without autocasting): the
    attention kernels add it to float32 logits.

    Shapes: B batch, T query length, S key length, H heads.

    Args:
        num_heads: int, H.
        num_buckets: int, the number of relative-position buckets (even and
            >= 4 when bidirectional, >= 2 otherwise).
        max_distance: int, distances from here on share the last bucket;
            must exceed the number of exact buckets (`num_buckets // 4`
            bidirectional, `num_buckets // 2` causal).
        bidirectional: bool, whether queries attend to keys on both sides.
        embeddings_initializer: initializer of the `(num_buckets, H)` table.

    Call arguments:
        query: `(B, T, ...)` tensor; only its shape is used.
        key: optional `(B, S, ...)` tensor; defaults to `query` (S = T).
        start_index: int or scalar integer tensor, the absolute position of
            the first query (the cache index when decoding). Defaults to 0.

    Returns:
        A float32 `(1, H, T, S)` bias.

    Raises:
        ValueError: if an argument is out of range, `query` or `key` has
            rank < 2, or `start_index` is a negative Python integer.
        TypeError: if `bidirectional` is not a bool.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    q = np.zeros((2, 5, 16), "float32")
    k = np.zeros((2, 7, 16), "float32")
    bias = ka.layers.RelativePositionBias(num_heads=4)(q, k)
    tuple(bias.shape)  # (1, 4, 5, 7)
    ```

    References:
        - [Raffel et al., 2020](https://arxiv.org/abs/1910.10683), T5,
          section 2.1.
        - [Shaw et al., 2018](https://arxiv.org/abs/1803.02155), relative
          position representations.
    """

    def __init__(
        self,
        num_heads,
        num_buckets=32,
        max_distance=128,
        bidirectional=True,
        embeddings_initializer="uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.bidirectional = check_bool(bidirectional, "bidirectional")
        self.num_buckets = self._check_num_buckets(num_buckets)
        max_exact = self.num_buckets // 4 if bidirectional else self.num_buckets // 2
        self.max_distance = check_positive_int(max_distance, "max_distance")
        if self.max_distance <= max_exact:
            raise ValueError(
                "Received an invalid value for argument `max_distance`, "
                f"expected an integer > {max_exact} (the number of exact "
                f"buckets for num_buckets={self.num_buckets}, "
                f"bidirectional={self.bidirectional}). Received: "
                f"max_distance={max_distance}"
            )
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.supports_masking = True

    def _check_num_buckets(self, num_buckets):
        if self.bidirectional:
            expected = "an even integer >= 4 (half per direction)"
            ok = _is_int(num_buckets) and num_buckets >= 4 and num_buckets % 2 == 0
        else:
            expected = "an integer >= 2"
            ok = _is_int(num_buckets) and num_buckets >= 2
        if not ok:
            raise ValueError(
                "Received an invalid value for argument `num_buckets`, "
                f"expected {expected} when bidirectional={self.bidirectional}. "
                f"Received: num_buckets={num_buckets!r}"
            )
        return int(num_buckets)

    def build(self, query_shape, key_shape=None):
        check_query_key_shape(query_shape, "query")
        check_query_key_shape(key_shape, "key")
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_buckets, self.num_heads),
            initializer=self.embeddings_initializer,
            trainable=True,
            autocast=False,
        )
        self.built = True

    def call(self, query, key=None, start_index=0):
        check_start_index(start_index)
        key = query if key is None else key
        query_length = ops.shape(query)[1]
        key_length = ops.shape(key)[1]
        query_pos = positions(query_length, start_index, "int32")  # (T,)
        key_pos = positions(key_length, 0, "int32")  # (S,)
        relative = key_pos[None, :] - query_pos[:, None]  # (T, S)
        buckets = t5_relative_position_bucket(
            relative,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )  # (T, S)
        table = ops.cast(self.embeddings, "float32")
        bias = ops.take(table, buckets, axis=0)  # (T, S, H)
        return ops.transpose(bias, (2, 0, 1))[None]  # (1, H, T, S)

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
        config.update(
            {
                "num_heads": self.num_heads,
                "num_buckets": self.num_buckets,
                "max_distance": self.max_distance,
                "bidirectional": self.bidirectional,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
