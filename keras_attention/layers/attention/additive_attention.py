"""Bahdanau (additive) attention with learned query/key projections."""

import keras
from keras import ops

from keras_attention.layers.attention.single_head_attention_base import (
    SingleHeadAttentionBase,
)
from keras_attention.utils.initializers import clone_initializer
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_attention")
class AdditiveAttention(SingleHeadAttentionBase):
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
        super().__init__(dropout=dropout, seed=seed, **kwargs)
        self.units = check_positive_int(units, "units", allow_none=True)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = self._check_input_shapes(query_shape, value_shape, key_shape)
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
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="query_dense",
        )
        self.query_dense.build(query_shape)
        self.key_dense = keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name="key_dense",
        )
        self.key_dense.build(key_shape)
        self.score_vector = self.add_weight(
            name="score_vector",
            shape=(units,),
            initializer=clone_initializer(self.kernel_initializer),
        )
        self.built = True

    def _logits(self, query, key):
        projected_query = self.query_dense(query)  # (B, T, U)
        projected_key = self.key_dense(key)  # (B, S, U)
        hidden = ops.tanh(
            ops.expand_dims(projected_query, 2)  # (B, T, 1, U)
            + ops.expand_dims(projected_key, 1)  # (B, 1, S, U)
        )  # (B, T, S, U)
        return ops.einsum("btsu,u->bts", hidden, self.score_vector)  # (B, T, S)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
