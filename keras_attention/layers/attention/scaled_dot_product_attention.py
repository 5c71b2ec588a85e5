"""Single-head scaled dot-product attention layer."""

import math

import keras
from keras import ops

from keras_attention.layers.attention.single_head_attention_base import (
    SingleHeadAttentionBase,
)
from keras_attention.ops import scaled_dot_product_attention
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_float


@keras.saving.register_keras_serializable(package="keras_attention")
class ScaledDotProductAttention(SingleHeadAttentionBase):
    """Single-head scaled dot-product attention, `softmax(Q K^T * s) V`.

    The attention of Vaswani et al. (2017) without projections or heads:
    every query vector is compared with every key vector by a dot product,
    the logits are scaled by `s` (default `1 / sqrt(D)`), normalised with a
    softmax over the keys (computed in float32) and used to average the
    values. With `use_scale=True` a learned scalar (initialised to 1)
    multiplies the scaled logits, as a learned inverse temperature.

    Shape letters: B batch, T query length, S key length, D query/key size,
    Dv value size. The layer is called like `keras.layers.MultiHeadAttention`.
    Implicit Keras masks (e.g. from `Embedding(mask_zero=True)`) are read
    from the inputs; padded keys get zero weight and padded query rows give
    zero outputs. The returned scores are in the layer's compute dtype
    (float16 under `mixed_float16`) and are taken before dropout.

    Args:
        scale: logit scale; `None` means `1 / sqrt(D)`.
        use_scale: whether to learn a scalar multiplier of the logits.
        dropout: dropout rate on the attention weights, in `[0, 1)`.
        seed: optional integer seed of the dropout.

    Call arguments:
        query: `(B, T, D)` tensor.
        value: `(B, S, Dv)` tensor.
        key: optional `(B, S, D)` tensor; defaults to `value`.
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
        ValueError: if `scale` is not positive, `dropout` is outside
            `[0, 1)`, `seed` is not an integer, or the inputs have the
            wrong rank or mismatched sizes.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    layer = ka.layers.ScaledDotProductAttention()
    q = np.random.rand(2, 3, 8).astype("float32")
    v = np.random.rand(2, 5, 8).astype("float32")
    out, scores = layer(q, v, return_attention_scores=True)
    tuple(out.shape), tuple(scores.shape)  # (2, 3, 8), (2, 3, 5)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", eq. 1.
    """

    def __init__(self, scale=None, use_scale=False, dropout=0.0, seed=None, **kwargs):
        super().__init__(dropout=dropout, seed=seed, **kwargs)
        self.scale = check_positive_float(scale, "scale", allow_none=True)
        self.use_scale = check_bool(use_scale, "use_scale")

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = self._check_input_shapes(query_shape, value_shape, key_shape)
        if None not in (query_shape[-1], key_shape[-1]) and (
            query_shape[-1] != key_shape[-1]
        ):
            raise ValueError(
                "Received incompatible arguments `query` and `key`, expected "
                "the same feature size (last axis). Received: "
                f"query.shape={tuple(query_shape)}, key.shape={tuple(key_shape)}"
            )
        if self.use_scale:
            self.learned_scale = self.add_weight(
                name="learned_scale", shape=(), initializer="ones"
            )
        self.built = True

    def _attend(self, query, key, value, mask, training):
        # The ops kernel with a single head: each input gains a head axis.
        scale = self.scale
        if scale is None:
            scale = 1.0 / math.sqrt(query.shape[-1])
        if self.use_scale:
            scale = ops.cast(self.learned_scale, self.compute_dtype) * scale
        output, scores = scaled_dot_product_attention(
            ops.expand_dims(query, 2),  # (B, T, 1, D)
            ops.expand_dims(key, 2),  # (B, S, 1, D)
            ops.expand_dims(value, 2),  # (B, S, 1, Dv)
            mask=mask,
            scale=scale,
            dropout=self.dropout,
            seed=self.seed_generator,
            training=training,
            return_weights=True,
        )  # (B, T, 1, Dv), (B, 1, T, S)
        output = ops.squeeze(output, axis=2)  # (B, T, Dv)
        return output, ops.squeeze(scores, axis=1)  # (B, T, S)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "use_scale": self.use_scale})
        return config
