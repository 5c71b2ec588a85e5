"""Scaled dot-product attention on `keras.ops` (any backend).

Shape letters: B batch, T query length, S key length, H query heads,
K key/value heads (`H % K == 0`; `K < H` is grouped-query attention, `K == 1`
multi-query attention), D key/query head size, Dv value head size.

This module imports nothing else from `keras_attention` except `masks`,
`dot_layout` and the argument checks of `utils.validation`.
"""

import math

import keras
from keras import ops

from keras_attention.ops.dot_layout import canonical_einsum
from keras_attention.ops.masks import causal_mask
from keras_attention.ops.masks import check_broadcastable
from keras_attention.ops.masks import mask_fill_value
from keras_attention.ops.masks import merge_masks
from keras_attention.utils.validation import check_same_batch


def _static_shape(x):
    return tuple(x.shape)


def _check_inputs(query, key, value):
    for name, x in (("query", query), ("key", key), ("value", value)):
        if len(x.shape) != 4:
            raise ValueError(
                f"Received an invalid value for argument `{name}`, expected a "
                "rank-4 tensor laid out (batch, length, heads, head_dim). "
                f"Received: {name}.shape={_static_shape(x)}"
            )
    check_same_batch(
        query=_static_shape(query), key=_static_shape(key), value=_static_shape(value)
    )
    _, _, num_heads, head_dim = query.shape
    _, key_len, kv_heads, key_dim = key.shape
    _, value_len, value_heads, _ = value.shape
    if head_dim is not None and key_dim is not None and head_dim != key_dim:
        raise ValueError(
            "Received incompatible arguments `query` and `key`, expected the "
            "same head size (last axis). Received: "
            f"query.shape={_static_shape(query)}, key.shape={_static_shape(key)}"
        )
    if None not in (kv_heads, value_heads) and kv_heads != value_heads:
        raise ValueError(
            "Received incompatible arguments `key` and `value`, expected the "
            "same number of heads (axis 2). Received: "
            f"key.shape={_static_shape(key)}, value.shape={_static_shape(value)}"
        )
    if None not in (key_len, value_len) and key_len != value_len:
        raise ValueError(
            "Received incompatible arguments `key` and `value`, expected the "
            "same length (axis 1). Received: "
            f"key.shape={_static_shape(key)}, value.shape={_static_shape(value)}"
        )
    if None not in (num_heads, kv_heads) and num_heads % kv_heads != 0:
        raise ValueError(
            "Received incompatible arguments `query` and `key`, expected the "
            "number of query heads to be a multiple of the number of key/value "
            f"heads. Received: {num_heads} query heads and {kv_heads} "
            "key/value heads"
        )


def _check_broadcast_to_scores(x, name, query, key):
    shape = _static_shape(x)
    if len(shape) > 4:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            "tensor of rank <= 4 that broadcasts to (batch, heads, "
            f"query_length, key_length). Received: {name}.shape={shape}"
        )
    scores_shape = (query.shape[0], query.shape[2], query.shape[1], key.shape[1])
    check_broadcastable([scores_shape, shape], name)


def attention_logits(query, key, scale):
    """Scaled logits `Q K^T * scale` of shape `(B, H, T, S)`.

    Grouped heads are handled without materialising repeated keys: query
    head `h` reads key/value head `h // (H // K)`.

    Args:
        query: `(B, T, H, D)` tensor.
        key: `(B, S, K, D)` tensor, `H % K == 0`.
        scale: logit scale (float or scalar tensor), usually `1 / sqrt(D)`.

    Returns:
        `(B, H, T, S)` logits in the query's dtype.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops import attention_logits
    q = np.random.rand(2, 5, 4, 8).astype("float32")
    k = np.random.rand(2, 7, 2, 8).astype("float32")  # 2 key/value heads
    logits = attention_logits(q, k, scale=8**-0.5)
    tuple(logits.shape)  # (2, 4, 5, 7)
    ```
    """
    query = ops.convert_to_tensor(query)  # array-likes: NumPy * torch fails
    num_heads = query.shape[2]
    kv_heads = key.shape[2]
    query = query * ops.cast(scale, query.dtype)
    if num_heads == kv_heads:
        # Under XLA its gradients run as canonical dots (`dot_layout`);
        # measured faster for equal heads, and slower for multi-query
        # attention, whose plain form XLA already lowers well.
        return canonical_einsum("bthd,bshd->bhts", query, key)  # (B, H, T, S)
    groups = num_heads // kv_heads
    q_shape = ops.shape(query)
    grouped = ops.reshape(
        query, (q_shape[0], q_shape[1], kv_heads, groups, q_shape[3])
    )  # (B, T, K, G, D)
    logits = ops.einsum("btkgd,bskd->bkgts", grouped, key)  # (B, K, G, T, S)
    l_shape = ops.shape(logits)
    return ops.reshape(
        logits, (l_shape[0], num_heads, l_shape[3], l_shape[4])
    )  # (B, H, T, S)


def attention_combine(weights, value):
    """Weighted sum of values: `(B, H, T, S) x (B, S, K, Dv) -> (B, T, H, Dv)`.

    Query head `h` reads key/value head `h // (H // K)`, as in
    `attention_logits`.

    Args:
        weights: `(B, H, T, S)` attention weights.
        value: `(B, S, K, Dv)` tensor, `H % K == 0`.

    Returns:
        `(B, T, H, Dv)` tensor.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops import attention_combine
    w = np.full((2, 4, 5, 7), 1 / 7, "float32")  # uniform weights
    v = np.random.rand(2, 7, 2, 8).astype("float32")  # 2 key/value heads
    out = attention_combine(w, v)
    tuple(out.shape)  # (2, 5, 4, 8)
    ```
    """
    num_heads = weights.shape[1]
    kv_heads = value.shape[2]
    if num_heads == kv_heads:  # see `attention_logits` on `canonical_einsum`
        return canonical_einsum("bhts,bshd->bthd", weights, value)  # (B, T, H, Dv)
    groups = num_heads // kv_heads
    w_shape = ops.shape(weights)
    grouped = ops.reshape(
        weights, (w_shape[0], kv_heads, groups, w_shape[2], w_shape[3])
    )  # (B, K, G, T, S)
    out = ops.einsum("bkgts,bskd->btkgd", grouped, value)  # (B, T, K, G, Dv)
    o_shape = ops.shape(out)
    return ops.reshape(
        out, (o_shape[0], o_shape[1], num_heads, o_shape[4])
    )  # (B, T, H, Dv)


def _softmax(logits):
    """Softmax over the last axis; a single key (static size 1) gets weight 1
    without `keras.ops.softmax`'s size-1 warning (e.g. one cached token)."""
    if logits.shape[-1] == 1:
        return ops.ones_like(logits)
    return ops.softmax(logits, axis=-1)


def masked_softmax(logits, mask=None, bias=None):
    """Softmax over the key axis, computed in float32.

    Masked positions (`mask == False`) get zero weight; rows with no
    attendable key get all-zero weights instead of NaN or a uniform
    distribution. `bias` is added to the logits before masking.

    Args:
        logits: `(..., T, S)` tensor of any float dtype.
        mask: optional boolean tensor broadcastable to `logits`.
        bias: optional float tensor broadcastable to `logits`.

    Returns:
        float32 weights with the shape of `logits`.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops import masked_softmax
    logits = np.zeros((1, 2, 3), "float32")  # (B, T, S)
    mask = np.array([[[True, True, False], [False, False, False]]])
    w = masked_softmax(logits, mask)
    # Row 0: [0.5, 0.5, 0.0]; row 1 (no attendable key): [0.0, 0.0, 0.0]
    ```
    """
    for name, x in (("mask", mask), ("bias", bias)):
        if hasattr(x, "shape") and hasattr(logits, "shape"):
            check_broadcastable([_static_shape(logits), _static_shape(x)], name)
    logits = ops.cast(logits, "float32")
    if bias is not None:
        logits = logits + ops.cast(bias, "float32")
    if mask is None:
        return _softmax(logits)
    mask = ops.cast(mask, "bool")
    logits = ops.where(mask, logits, mask_fill_value("float32"))
    weights = _softmax(logits)
    any_key = ops.any(mask, axis=-1, keepdims=True)  # (..., T, 1)
    return weights * ops.cast(any_key, "float32")


def scaled_dot_product_attention(
    query,
    key,
    value,
    mask=None,
    bias=None,
    causal=False,
    scale=None,
    dropout=0.0,
    seed=None,
    training=False,
    return_weights=False,
    causal_offset=0,
):
    """Scaled dot-product attention, `softmax(Q K^T * scale + bias) V`.

    Tensors are laid out `(B, T, H, D)` as in
    `keras.ops.dot_product_attention`. Query heads may outnumber key/value
    heads (grouped-query and multi-query attention). The softmax runs in
    float32 and masked logits are filled with a dtype-safe constant, so
    float16 and bfloat16 inputs neither overflow nor produce NaN. A query row
    whose keys are all masked returns zeros (and zero weights).

    Args:
        query: `(B, T, H, D)` tensor.
        key: `(B, S, K, D)` tensor, `H % K == 0`.
        value: `(B, S, K, Dv)` tensor.
        mask: optional boolean tensor broadcastable to `(B, H, T, S)`,
            `True` where the query may attend the key.
        bias: optional additive float tensor broadcastable to `(B, H, T, S)`
            (relative position bias, ALiBi, ...).
        causal: whether query `i` may only attend keys `j <= i +
            causal_offset`. Combined with `mask` by logical AND.
        scale: logit scale; defaults to `1 / sqrt(D)`.
        dropout: dropout rate on the attention weights, in `[0, 1)`.
        seed: a `keras.random.SeedGenerator` or int for the dropout.
        training: whether dropout is active.
        return_weights: whether to also return the attention weights.
        causal_offset: absolute position of the first query (int or scalar
            tensor), e.g. the cache index during incremental decoding.

    Returns:
        `(B, T, H, Dv)` output in the query's dtype, or a tuple
        `(output, weights)` with `(B, H, T, S)` weights when
        `return_weights=True`. The weights are returned before dropout.

    Raises:
        ValueError: on wrong ranks, mismatched head sizes or counts, masks
            or biases that cannot broadcast, or `dropout` outside `[0, 1)`.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops import scaled_dot_product_attention
    q = np.random.rand(2, 5, 4, 8).astype("float32")
    kv = np.random.rand(2, 7, 2, 8).astype("float32")  # 2 key/value heads
    out, w = scaled_dot_product_attention(q, kv, kv, causal=True,
                                          return_weights=True)
    tuple(out.shape), tuple(w.shape)  # (2, 5, 4, 8), (2, 4, 5, 7)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", eq. 1.
        Ainslie et al., 2023, "GQA: Training Generalized Multi-Query
        Transformer Models from Multi-Head Checkpoints".
    """
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(
            "Received an invalid value for argument `dropout`, expected a "
            f"float in [0, 1). Received: dropout={dropout!r}"
        )
    query = ops.convert_to_tensor(query)
    key = ops.convert_to_tensor(key, dtype=query.dtype)
    value = ops.convert_to_tensor(value, dtype=query.dtype)
    _check_inputs(query, key, value)
    if mask is not None:
        mask = ops.convert_to_tensor(mask)
        _check_broadcast_to_scores(mask, "mask", query, key)
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
        _check_broadcast_to_scores(bias, "bias", query, key)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])

    if causal:
        q_len = ops.shape(query)[1]
        k_len = ops.shape(key)[1]
        mask = merge_masks(mask, causal_mask(q_len, k_len, causal_offset))

    logits = attention_logits(query, key, scale)  # (B, H, T, S)
    weights = masked_softmax(logits, mask, bias)  # (B, H, T, S) float32
    weights = ops.cast(weights, query.dtype)
    attended = weights
    if training and dropout > 0:
        attended = keras.random.dropout(weights, dropout, seed=seed)
    output = attention_combine(ops.cast(attended, value.dtype), value)
    if return_weights:
        return output, weights
    return output
