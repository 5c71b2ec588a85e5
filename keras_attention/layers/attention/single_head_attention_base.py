"""Shared machinery of the classic attention layers (not public).

`ScaledDotProductAttention`, `AdditiveAttention`, `MultiplicativeAttention`
and `AttentionPooling` differ only in how they score a query against the
keys and in their weights. Everything else lives here, once:

- `AttentionWeightsBase`: the `dropout` / `seed` arguments and their
  config, the masked softmax (in float32) returned in the compute dtype,
  and dropout on those weights in training only.
- `SingleHeadAttentionBase`: the `keras.layers.MultiHeadAttention`-style
  interface `layer(query, value, key=None, ...)` of the single-head layers:
  input shape checks, mask merging through `compute_attention_mask`, the
  weighted average of the values, mask propagation and output shapes/specs.
  A subclass writes `_logits(query, key)` (or overrides `_attend`).

Shape letters: B batch, T query length, S key length, Dv value size.
"""

import numbers

import keras
from keras import ops

from keras_attention.layers.attention.attention_mask import compute_attention_mask
from keras_attention.ops import masked_softmax
from keras_attention.utils.validation import check_rank
from keras_attention.utils.validation import check_rate
from keras_attention.utils.validation import check_same_batch


class AttentionWeightsBase(keras.layers.Layer):
    """Softmax attention weights with dropout: the part every layer shares.

    Subclasses pass `dropout`, `seed` and the Keras `**kwargs` to
    `super().__init__`, then add their own arguments and config entries.
    """

    def __init__(self, dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.dropout = check_rate(dropout, "dropout")
        if seed is not None and (
            not isinstance(seed, numbers.Integral) or isinstance(seed, bool)
        ):
            raise ValueError(
                "Received an invalid value for argument `seed`, expected an "
                f"integer or None. Received: seed={seed!r}"
            )
        self.seed = None if seed is None else int(seed)
        self.supports_masking = True
        self.seed_generator = (
            keras.random.SeedGenerator(self.seed) if self.dropout > 0 else None
        )

    def _attention_weights(self, logits, mask):
        """Masked softmax over the last axis, in float32, returned in the
        compute dtype; rows with no attendable key are zeros."""
        return ops.cast(masked_softmax(logits, mask), self.compute_dtype)

    def _dropout_weights(self, weights, training):
        """Dropout on the attention weights, in training only."""
        if training and self.dropout > 0:
            return keras.random.dropout(
                weights, self.dropout, seed=self.seed_generator
            )
        return weights

    def get_config(self):
        config = super().get_config()
        config.update({"dropout": self.dropout, "seed": self.seed})
        return config


class SingleHeadAttentionBase(AttentionWeightsBase):
    """The `layer(query, value, key=None, ...)` single-head attention layers.

    `query` is `(B, T, Dq)`, `value` `(B, S, Dv)` and `key` `(B, S, Dk)`
    (defaults to `value`). The output `(B, T, Dv)` is aligned with the query
    and keeps its mask; the returned scores `(B, T, S)` are the weights
    before dropout, in the compute dtype.
    """

    def _check_input_shapes(self, query_shape, value_shape, key_shape=None):
        """Rank-3 inputs, keys as long as values; returns the key shape."""
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
        return key_shape

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
        check_same_batch(
            query=tuple(query.shape), value=tuple(value.shape), key=tuple(key.shape)
        )
        mask = compute_attention_mask(
            query,
            value,
            query_mask=query_mask,
            value_mask=value_mask,
            key_mask=key_mask,
            attention_mask=attention_mask,
            use_causal_mask=use_causal_mask,
        )  # broadcasts to (B, 1, T, S)
        output, scores = self._attend(query, key, value, mask, training)
        if return_attention_scores:
            return output, scores
        return output

    def _logits(self, query, key):
        """The `(B, T, S)` attention logits of the layer's score function."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `_logits(query, key)`."
        )

    def _attend(self, query, key, value, mask, training):
        """Returns the `(B, T, Dv)` output and the `(B, T, S)` weights."""
        logits = self._logits(query, key)  # (B, T, S)
        weights = self._attention_weights(
            ops.expand_dims(logits, 1), mask
        )  # (B, 1, T, S)
        weights = ops.squeeze(weights, 1)  # (B, T, S)
        output = ops.einsum(
            "bts,bsd->btd",
            self._dropout_weights(weights, training),
            ops.cast(value, self.compute_dtype),
        )  # (B, T, Dv)
        return output, weights

    def compute_mask(self, query, previous_mask=None):
        # The output is aligned with the query: it keeps the query's mask.
        return previous_mask

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        return tuple(query_shape)[:-1] + (tuple(value_shape)[-1],)

    def compute_output_spec(
        self, query, value, key=None, return_attention_scores=False, **kwargs
    ):
        # Takes the arguments of `call`; masks and `training` do not change
        # the output structure.
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
