"""Luong (multiplicative) attention: dot, general, concat and location scores."""

import numbers

import keras
from keras import ops

from keras_attention.layers.attention.attention_mask import compute_attention_mask
from keras_attention.ops import masked_softmax
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rank
from keras_attention.utils.validation import check_rate

SCORES = ("dot", "general", "concat", "location")


def _clone(initializer):
    """A fresh copy, so that weights do not share a seeded initializer."""
    return keras.initializers.get(keras.initializers.serialize(initializer))


@keras.saving.register_keras_serializable(package="keras_attention")
class MultiplicativeAttention(keras.layers.Layer):
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
        super().__init__(**kwargs)
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
        self.supports_masking = True
        self.seed_generator = (
            keras.random.SeedGenerator(self.seed) if self.dropout > 0 else None
        )

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
        self._check_key_length(key_shape)
        query_dim, key_dim = query_shape[-1], key_shape[-1]
        if self.score != "dot" and None in (query_dim, key_dim):
            raise ValueError(
                "Received invalid arguments `query` and `key`, expected known "
                f"feature sizes (last axis) for `score='{self.score}'`. "
                f"Received: query.shape={tuple(query_shape)}, "
                f"key.shape={tuple(key_shape)}"
            )
        if self.score == "dot":
            if None not in (query_dim, key_dim) and query_dim != key_dim:
                raise ValueError(
                    "Received incompatible arguments `query` and `key`, "
                    "expected the same feature size (last axis) for "
                    "`score='dot'`. Received: "
                    f"query.shape={tuple(query_shape)}, "
                    f"key.shape={tuple(key_shape)}"
                )
        elif self.score == "general":
            self.kernel = self.add_weight(
                name="kernel",
                shape=(query_dim, key_dim),
                initializer=_clone(self.kernel_initializer),
            )
        elif self.score == "concat":
            units = self.units if self.units is not None else key_dim
            self.kernel = self.add_weight(
                name="kernel",
                shape=(query_dim + key_dim, units),
                initializer=_clone(self.kernel_initializer),
            )
            self.score_vector = self.add_weight(
                name="score_vector",
                shape=(units,),
                initializer=_clone(self.kernel_initializer),
            )
        else:  # location
            self.kernel = self.add_weight(
                name="kernel",
                shape=(query_dim, self.sequence_length),
                initializer=_clone(self.kernel_initializer),
            )
        if self.use_scale:
            self.learned_scale = self.add_weight(
                name="learned_scale", shape=(), initializer="ones"
            )
        self.built = True

    def _logits(self, query, key):
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
            return ops.einsum("btsu,u->bts", hidden, self.score_vector)
        # location: logits over the maximum source length, sliced to S.
        self._check_key_length(key.shape)
        logits = ops.einsum("btq,ql->btl", query, self.kernel)  # (B, T, L)
        return logits[:, :, : ops.shape(key)[1]]  # (B, T, S)

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
        logits = self._logits(query, key)  # (B, T, S)
        if self.use_scale:
            logits = logits * ops.cast(self.learned_scale, logits.dtype)
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
                "score": self.score,
                "units": self.units,
                "sequence_length": self.sequence_length,
                "use_scale": self.use_scale,
                "dropout": self.dropout,
                "seed": self.seed,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
