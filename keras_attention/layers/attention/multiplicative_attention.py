"""Luong (multiplicative) attention: dot, general, concat and location scores."""

import keras
from keras import ops

from keras_attention.layers.attention.single_head_attention_base import (
    SingleHeadAttentionBase,
)
from keras_attention.utils.initializers import clone_initializer
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_last_dim
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_int

SCORES = ("dot", "general", "concat", "location")


def _check_dot_sizes(query_shape, key_shape):
    """`score='dot'` needs queries and keys of one feature size."""
    query_dim, key_dim = query_shape[-1], key_shape[-1]
    if None not in (query_dim, key_dim) and query_dim != key_dim:
        raise ValueError(
            "Received incompatible arguments `query` and `key`, expected the "
            "same feature size (last axis) for `score='dot'`. Received: "
            f"query.shape={tuple(query_shape)}, key.shape={tuple(key_shape)}"
        )


@keras.saving.register_keras_serializable(package="keras_attention")
class MultiplicativeAttention(SingleHeadAttentionBase):
    """Global attention of Luong et al. (2015) with its four score functions.

    For a query (target state) `h_t` and keys (source states) `h_s`:

    - `"dot"`: `score(h_t, h_s) = h_t^T h_s` (needs Dq == Dk);
    - `"general"`: `score(h_t, h_s) = h_t^T W_a h_s`, `W_a` of shape
      `(Dq, Dk)`;
    - `"concat"`: `score(h_t, h_s) = v_a^T tanh(W_a [h_t; h_s])`, `W_a` of
      shape `(Dq + Dk, U)`, `v_a` of shape `(U,)`;
    - `"location"`: `a_t = softmax(W_a h_t)`, `W_a` of shape
      `(Dq, sequence_length)`: the weights depend on the query only; the
      logits are sliced to the actual key length S.

    With `use_scale=True` a learned scalar (initialised to 1) multiplies the
    scores. The weights are a softmax over the keys (in float32) and average
    the values. Shape letters: B batch, T query length, S key length, Dq,
    Dk, Dv query, key and value sizes, U `units`. The layer is called like
    `keras.layers.MultiHeadAttention`; implicit Keras masks are read from
    the inputs, padded keys get zero weight and padded query rows give zero
    outputs. Scores are returned in the compute dtype, before dropout.

    Args:
        score: one of `"dot"`, `"general"`, `"concat"`, `"location"`.
        units: hidden size U of the `"concat"` score; `None` means the key
            size Dk. Unused by the other scores.
        sequence_length: maximum key length S, required by the
            `"location"` score. Unused by the other scores.
        use_scale: whether to learn a scalar multiplier of the scores.
        dropout: dropout rate on the attention weights, in `[0, 1)`.
        seed: optional integer seed of the dropout.
        kernel_initializer: initializer of `W_a` and `v_a`.

    Call arguments:
        query: `(B, T, Dq)` tensor (target hidden states).
        value: `(B, S, Dv)` tensor (source hidden states).
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
        ValueError: if `score` is unknown, `units` or `sequence_length` is
            not a positive integer, `score="location"` has no
            `sequence_length` or receives keys longer than it, `dropout` is
            outside `[0, 1)`, `seed` is not an integer, the `"dot"` score
            receives query and key of different sizes, or the inputs have the
            wrong rank or mismatched lengths.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    layer = ka.layers.MultiplicativeAttention(score="general")
    q = np.random.rand(2, 3, 8).astype("float32")
    v = np.random.rand(2, 5, 6).astype("float32")
    out, scores = layer(q, v, return_attention_scores=True)
    tuple(out.shape), tuple(scores.shape)  # (2, 3, 6), (2, 3, 5)
    ```

    References:
        Luong, Pham and Manning, 2015, "Effective Approaches to
        Attention-based Neural Machine Translation", section 3.1.
    """

    def __init__(
        self,
        score="dot",
        units=None,
        sequence_length=None,
        use_scale=False,
        dropout=0.0,
        seed=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(dropout=dropout, seed=seed, **kwargs)
        self.score = check_one_of(score, "score", SCORES)
        self.units = check_positive_int(units, "units", allow_none=True)
        self.sequence_length = check_positive_int(
            sequence_length, "sequence_length", allow_none=True
        )
        if score == "location" and sequence_length is None:
            raise ValueError(
                "Received an invalid value for argument `sequence_length`, "
                "expected a positive integer (the maximum key length) when "
                "`score='location'`. Received: sequence_length=None"
            )
        self.use_scale = check_bool(use_scale, "use_scale")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _check_key_length(self, key_shape):
        length = key_shape[1]
        if self.score == "location" and length is not None:
            if length > self.sequence_length:
                raise ValueError(
                    "Received an invalid value for argument `key`, expected a "
                    f"key length <= sequence_length={self.sequence_length} "
                    f"for `score='location'`. Received: key.shape="
                    f"{tuple(key_shape)}"
                )

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = self._check_input_shapes(query_shape, value_shape, key_shape)
        self._check_key_length(key_shape)
        query_dim, key_dim = query_shape[-1], key_shape[-1]
        self._feature_sizes = (query_dim, key_dim)  # checked at each call
        if self.score != "dot" and None in (query_dim, key_dim):
            raise ValueError(
                "Received invalid arguments `query` and `key`, expected known "
                f"feature sizes (last axis) for `score='{self.score}'`. "
                f"Received: query.shape={tuple(query_shape)}, "
                f"key.shape={tuple(key_shape)}"
            )
        if self.score == "dot":
            _check_dot_sizes(query_shape, key_shape)
        elif self.score == "general":
            self.kernel = self.add_weight(
                name="kernel",
                shape=(query_dim, key_dim),
                initializer=clone_initializer(self.kernel_initializer),
            )
        elif self.score == "concat":
            units = self.units if self.units is not None else key_dim
            self.kernel = self.add_weight(
                name="kernel",
                shape=(query_dim + key_dim, units),
                initializer=clone_initializer(self.kernel_initializer),
            )
            self.score_vector = self.add_weight(
                name="score_vector",
                shape=(units,),
                initializer=clone_initializer(self.kernel_initializer),
            )
        else:  # location
            self.kernel = self.add_weight(
                name="kernel",
                shape=(query_dim, self.sequence_length),
                initializer=clone_initializer(self.kernel_initializer),
            )
        if self.use_scale:
            self.learned_scale = self.add_weight(
                name="learned_scale", shape=(), initializer="ones"
            )
        self.built = True

    def _logits(self, query, key):
        # The inputs must fit the weights built for them.
        if self.score == "dot":
            _check_dot_sizes(query.shape, key.shape)
        else:
            query_dim, key_dim = self._feature_sizes
            check_last_dim(tuple(query.shape), "query", query_dim)
            check_last_dim(tuple(key.shape), "key", key_dim)
        logits = self._score_logits(query, key)  # (B, T, S)
        if self.use_scale:
            logits = logits * ops.cast(self.learned_scale, logits.dtype)
        return logits

    def _score_logits(self, query, key):
        if self.score == "dot":
            return ops.einsum("btd,bsd->bts", query, key)  # (B, T, S)
        if self.score == "general":
            projected = ops.einsum("bsk,qk->bsq", key, self.kernel)  # (B, S, Dq)
            return ops.einsum("btq,bsq->bts", query, projected)  # (B, T, S)
        if self.score == "concat":
            query_dim = query.shape[-1]
            # W_a [h_t; h_s] = W_a[:Dq] h_t + W_a[Dq:] h_s, without a (T, S)
            # concatenation.
            query_part = ops.einsum(
                "btq,qu->btu", query, self.kernel[:query_dim]
            )  # (B, T, U)
            key_part = ops.einsum(
                "bsk,ku->bsu", key, self.kernel[query_dim:]
            )  # (B, S, U)
            hidden = ops.tanh(
                ops.expand_dims(query_part, 2) + ops.expand_dims(key_part, 1)
            )  # (B, T, S, U)
            return ops.einsum("btsu,u->bts", hidden, self.score_vector)  # (B, T, S)
        # location: logits over the maximum source length, sliced to S.
        self._check_key_length(key.shape)
        logits = ops.einsum("btq,ql->btl", query, self.kernel)  # (B, T, L)
        return logits[:, :, : ops.shape(key)[1]]  # (B, T, S)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "score": self.score,
                "units": self.units,
                "sequence_length": self.sequence_length,
                "use_scale": self.use_scale,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
