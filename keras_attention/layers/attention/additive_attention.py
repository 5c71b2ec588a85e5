"""Bahdanau (additive) attention with learned query/key projections."""

import numbers

import keras
from keras import ops

from keras_attention.layers.attention.attention_mask import compute_attention_mask
from keras_attention.ops import masked_softmax
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rank
from keras_attention.utils.validation import check_rate


def _clone(initializer):
    """A fresh copy, so that sub-layers do not share a seeded initializer."""
    return keras.initializers.get(keras.initializers.serialize(initializer))


@keras.saving.register_keras_serializable(package="keras_attention")
class AdditiveAttention(keras.layers.Layer):
    """Additive attention of Bahdanau et al. (2015), with learned projections.

    Each query `q_t` is compared with each key `k_s` by a one-hidden-layer
    network, `score(q_t, k_s) = v^T tanh(W_q q_t + W_k k_s + b)`, with learned
    `W_q`, `W_k` (to `units`), bias `b` and score vector `v`. The scores are
    normalised with a softmax over the keys (in float32) and average the
    values: `output_t = sum_s softmax_s(score(q_t, k_s)) v_s`.

    Unlike `keras.layers.AdditiveAttention`, which adds query and key as
    they are, the projections are learned, so query and key may have
    different sizes. Shape letters: B batch, T query length, S key length,
    Dq, Dk, Dv query, key and value sizes, U `units`. The layer is called
    like `keras.layers.MultiHeadAttention`; implicit Keras masks are read
    from the inputs, padded keys get zero weight and padded query rows give
    zero outputs. Scores are returned in the compute dtype, before dropout.

    Args:
        units: size U of the hidden layer; `None` means the key size Dk.
        use_bias: whether to learn the bias `b`.
        dropout: dropout rate on the attention weights, in `[0, 1)`.
        seed: optional integer seed of the dropout.
        kernel_initializer: initializer of `W_q`, `W_k` and `v`.
        bias_initializer: initializer of `b`.

    Call arguments:
        query: `(B, T, Dq)` tensor (decoder states).
        value: `(B, S, Dv)` tensor (encoder annotations).
        key: optional `(B, S, Dk)` tensor; defaults to `value`.
        query_mask: optional `(B, T)` boolean mask of real query tokens.
        value_mask: optional `(B, S)` boolean mask of real key/value tokens.
        key_mask: optional `(B, S)` boolean mask, merged with `value_mask`.
        attention_mask: optional `(B, T, S)` boolean mask, `True` where the
            query may attend the key.
        use_causal_mask: whether query `i` may only attend keys `j <= i`.
        return_attention_scores: whether to also return the `(B, T, S)`
            attention weights.
        training: whether dropout is active.

    Returns:
        The `(B, T, Dv)` output, or `(output, scores)` when
        `return_attention_scores=True`.

    Raises:
        ValueError: if `units` is not a positive integer, `dropout` is
            outside `[0, 1)`, `seed` is not an integer, or the inputs have the
            wrong rank or mismatched lengths.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    layer = ka.layers.AdditiveAttention(units=16)
    q = np.random.rand(2, 3, 8).astype("float32")
    v = np.random.rand(2, 5, 6).astype("float32")
    out, scores = layer(q, v, return_attention_scores=True)
    tuple(out.shape), tuple(scores.shape)  # (2, 3, 6), (2, 3, 5)
    ```

    References:
        Bahdanau, Cho and Bengio, 2015, "Neural Machine Translation by
        Jointly Learning to Align and Translate", appendix A.1.2.
    """

    def __init__(
        self,
        units=None,
        use_bias=True,
        dropout=0.0,
        seed=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units", allow_none=True)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.dropout = check_rate(dropout, "dropout")
        if seed is not None and (
            not isinstance(seed, numbers.Integral) or isinstance(seed, bool)
        ):
            raise ValueError(
                "Received an invalid value for argument `seed`, expected an "
                f"integer or None. Received: seed={seed!r}"
            )
        self.seed = None if seed is None else int(seed)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True
        self.seed_generator = (
            keras.random.SeedGenerator(self.seed) if self.dropout > 0 else None
        )

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        check_rank(query_shape, "query", 3)
        check_rank(value_shape, "value", 3)
        check_rank(key_shape, "key", 3)
        if None not in (key_shape[1], value_shape[1]) and (
            key_shape[1] != value_shape[1]
        ):
            raise ValueError(
                "Received incompatible arguments `key` and `value`, expected "
                "the same length (axis 1). Received: "
                f"key.shape={tuple(key_shape)}, value.shape={tuple(value_shape)}"
            )
        units = self.units if self.units is not None else key_shape[-1]
        if units is None:
            raise ValueError(
                "Received an invalid value for argument `key`, expected a "
                "known last axis when `units=None`. Received: "
                f"key.shape={tuple(key_shape)}"
            )
        self.query_dense = keras.layers.Dense(
            units,
            use_bias=False,
            kernel_initializer=_clone(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="query_dense",
        )
        self.query_dense.build(query_shape)
        self.key_dense = keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=_clone(self.kernel_initializer),
            bias_initializer=_clone(self.bias_initializer),
            dtype=self.dtype_policy,
            name="key_dense",
        )
        self.key_dense.build(key_shape)
        self.score_vector = self.add_weight(
            name="score_vector",
            shape=(units,),
            initializer=_clone(self.kernel_initializer),
        )
        self.built = True

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        key = value if key is None else key
        mask = compute_attention_mask(
            query,
            value,
            query_mask=query_mask,
            value_mask=value_mask,
            key_mask=key_mask,
            attention_mask=attention_mask,
            use_causal_mask=use_causal_mask,
        )  # broadcasts to (B, 1, T, S)
        projected_query = self.query_dense(query)  # (B, T, U)
        projected_key = self.key_dense(key)  # (B, S, U)
        hidden = ops.tanh(
            ops.expand_dims(projected_query, 2)  # (B, T, 1, U)
            + ops.expand_dims(projected_key, 1)  # (B, 1, S, U)
        )  # (B, T, S, U)
        logits = ops.einsum("btsu,u->bts", hidden, self.score_vector)  # (B, T, S)
        weights = masked_softmax(ops.expand_dims(logits, 1), mask)  # (B, 1, T, S)
        weights = ops.cast(ops.squeeze(weights, 1), self.compute_dtype)  # (B, T, S)
        attended = weights
        if training and self.dropout > 0:
            attended = keras.random.dropout(
                weights, self.dropout, seed=self.seed_generator
            )
        output = ops.einsum(
            "bts,bsd->btd", attended, ops.cast(value, self.compute_dtype)
        )  # (B, T, Dv)
        if return_attention_scores:
            return output, weights
        return output

    def compute_mask(self, query, previous_mask=None):
        # The output is aligned with the query: it keeps the query's mask.
        return previous_mask

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        return tuple(query_shape)[:-1] + (tuple(value_shape)[-1],)

    def compute_output_spec(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        output = keras.KerasTensor(
            self.compute_output_shape(query.shape, value.shape),
            dtype=self.compute_dtype,
        )
        if not return_attention_scores:
            return output
        scores = keras.KerasTensor(
            (query.shape[0], query.shape[1], value.shape[1]),
            dtype=self.compute_dtype,
        )  # (B, T, S)
        return output, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "use_bias": self.use_bias,
                "dropout": self.dropout,
                "seed": self.seed,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
