"""Boolean attention masks: construction, merging and dtype-aware fill values.

Convention (shared with `keras.ops.dot_product_attention`): a boolean mask
broadcasts to `(B, H, T, S)` and `True` means "this query may attend to this
key". Shape letters: B batch, H heads, T query length, S key length.

This module imports nothing else from `keras_attention`.
"""

import numbers

import keras
import numpy as np
from keras import ops


def _rank(x):
    return len(ops.shape(x))


def _check_size(value, name):
    """A non-negative Python int, or a tensor (checked by the backend)."""
    if hasattr(value, "shape") and not isinstance(value, numbers.Number):
        return
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or value < 0
    ):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"non-negative int or a scalar integer tensor. Received: {name}={value!r}"
        )


def causal_mask(query_length, key_length=None, offset=0):
    """Lower-triangular boolean mask, `True` where key `j <= i + offset`.

    Query position `i` sits at absolute position `i + offset`, so with a KV
    cache holding `offset` earlier tokens, a chunk of `query_length` new
    tokens sees everything cached plus itself up to the diagonal. With
    `offset=0` and `query_length != key_length` the triangle is aligned to the
    top-left corner, as in `keras.layers.MultiHeadAttention`.

    Args:
        query_length: int or scalar tensor, T.
        key_length: int or scalar tensor, S. Defaults to `query_length`.
        offset: int or scalar integer tensor, the absolute position of the
            first query (the cache index when decoding).

    Returns:
        Boolean tensor of shape `(T, S)`.

    Example:

    ```python
    from keras_attention.ops import causal_mask
    causal_mask(3)          # [[T, F, F], [T, T, F], [T, T, T]]
    causal_mask(1, 4, offset=2)  # [[T, T, T, F]]
    ```
    """
    if key_length is None:
        key_length = query_length
    for name, value in (
        ("query_length", query_length), ("key_length", key_length), ("offset", offset)
    ):
        _check_size(value, name)
    rows = ops.expand_dims(ops.arange(query_length, dtype="int32"), 1)  # (T, 1)
    cols = ops.expand_dims(ops.arange(key_length, dtype="int32"), 0)  # (1, S)
    offset = ops.cast(offset, "int32")
    return ops.greater_equal(rows + offset, cols)  # (T, S)


def padding_mask(key_mask, query_mask=None):
    """Attention mask from per-token padding masks.

    Args:
        key_mask: `(B, S)` boolean (or 0/1) tensor, `True` for real key tokens.
        query_mask: optional `(B, T)` boolean tensor, `True` for real query
            tokens. Padded query rows become fully masked (their outputs are
            zeros).

    Returns:
        Boolean tensor of shape `(B, 1, 1, S)` or, with `query_mask`,
        `(B, 1, T, S)`, ready to broadcast against `(B, H, T, S)`.

    Raises:
        ValueError: if a mask is not rank 2.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops import padding_mask
    m = padding_mask(np.array([[True, True, False]]))
    tuple(m.shape)  # (1, 1, 1, 3)
    ```
    """
    if _rank(key_mask) != 2:
        raise ValueError(
            "Received an invalid value for argument `key_mask`, expected a "
            f"rank-2 tensor of shape (batch, key_length). Received: "
            f"key_mask.shape={tuple(ops.shape(key_mask))}"
        )
    key_mask = ops.cast(key_mask, "bool")
    mask = key_mask[:, None, None, :]  # (B, 1, 1, S)
    if query_mask is not None:
        if _rank(query_mask) != 2:
            raise ValueError(
                "Received an invalid value for argument `query_mask`, expected "
                "a rank-2 tensor of shape (batch, query_length). Received: "
                f"query_mask.shape={tuple(ops.shape(query_mask))}"
            )
        query_mask = ops.cast(query_mask, "bool")
        mask = ops.logical_and(mask, query_mask[:, None, :, None])  # (B, 1, T, S)
    return mask


def merge_masks(*masks):
    """Logical AND of boolean masks that broadcast to `(B, H, T, S)`.

    `None` entries are skipped; the result is `None` when every entry is
    `None`. Masks of rank < 4 are aligned to the right (NumPy broadcasting),
    so a `(T, S)` causal mask and a `(B, 1, 1, S)` padding mask combine.

    Args:
        *masks: boolean tensors of rank <= 4, or `None`.

    Returns:
        A boolean tensor of the broadcast shape, or `None`.

    Raises:
        ValueError: if a mask has rank > 4 or static shapes that cannot
            broadcast together.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops import causal_mask, merge_masks, padding_mask
    m = merge_masks(causal_mask(3), padding_mask(np.array([[1, 1, 0]])), None)
    tuple(m.shape)  # (1, 1, 3, 3)
    ```
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    shapes = []
    for i, m in enumerate(present):
        # Static sizes only: a dynamic axis (a tensor inside tf.function) is
        # unknown here, like `None`.
        shape = tuple(
            d if isinstance(d, numbers.Integral) else None for d in ops.shape(m)
        )
        if len(shape) > 4:
            raise ValueError(
                "Received an invalid value for argument `masks`, expected "
                "boolean tensors of rank <= 4 that broadcast to "
                f"(batch, heads, query_length, key_length). Received: a mask "
                f"of shape {shape}"
            )
        shapes.append(shape)
    check_broadcastable(shapes, "masks")
    merged = ops.cast(present[0], "bool")
    for m in present[1:]:
        merged = ops.logical_and(merged, ops.cast(m, "bool"))
    return merged


def check_broadcastable(shapes, argument_name):
    """Raise a `ValueError` if static `shapes` cannot broadcast together.

    Unknown (`None`) dimensions are accepted.
    """
    rank = max(len(s) for s in shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    for axis in range(rank):
        sizes = {d for d in (p[axis] for p in padded) if d is not None and d != 1}
        if len(sizes) > 1:
            raise ValueError(
                f"Received an invalid value for argument `{argument_name}`, "
                "expected shapes that broadcast together. Received: shapes "
                f"{[tuple(s) for s in shapes]} (axis {axis - rank} has sizes "
                f"{sorted(sizes)})"
            )


def mask_fill_value(dtype):
    """Large negative logit for masked positions, safe for `dtype`.

    Half the most negative finite value of the dtype: far below any real
    logit, yet adding a moderate bias cannot overflow to `-inf` (which would
    turn a fully masked row into NaN). For float16 this is -32752, not the
    `-1e9` that overflows (keras PR #17571).

    Example:

    ```python
    from keras_attention.ops import mask_fill_value
    mask_fill_value("float16")  # -32752.0
    ```
    """
    if keras.backend.standardize_dtype(dtype) == "float16":
        return float(-0.5 * np.finfo(np.float16).max)  # -32752.0
    return -1e9  # float32, float64 and bfloat16 (float32 exponent range)
