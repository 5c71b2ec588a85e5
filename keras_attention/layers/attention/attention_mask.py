"""The one place where attention layers merge their masks.

Every attention layer accepts the same mask inputs, with Keras semantics:

- implicit Keras masks (`query_mask`, `value_mask`, `key_mask`, filled in by
  Keras from `_keras_mask` of the inputs, e.g. after
  `Embedding(mask_zero=True)`), each `(B, T)` or `(B, S)`;
- an explicit `attention_mask` of shape `(B, T, S)` (or `(B, H, T, S)`),
  `True` where the query may attend the key;
- `use_causal_mask`, optionally offset by the cache index when decoding.

`compute_attention_mask` returns a boolean mask that broadcasts to
`(B, H, T, S)` or `None` when nothing is masked.
"""

from keras import ops

from keras_attention.ops import causal_mask
from keras_attention.ops import merge_masks


def _check_token_mask(mask, name, length, length_name):
    shape = tuple(mask.shape)
    if len(shape) != 2:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"rank-2 tensor of shape (batch, {length_name}). Received: "
            f"{name}.shape={shape}"
        )
    if shape[1] is not None and length is not None and shape[1] != length:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            f"{length_name}={length} on axis 1. Received: {name}.shape={shape}"
        )


def compute_attention_mask(
    query,
    value,
    query_mask=None,
    value_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    causal_offset=0,
):
    """Merge implicit, explicit and causal masks into one boolean mask.

    Args:
        query: `(B, T, ...)` query tensor (only its shape is used).
        value: `(B, S, ...)` value tensor (only its shape is used).
        query_mask: optional `(B, T)` mask; padded queries attend nothing and
            return zeros.
        value_mask: optional `(B, S)` mask of attendable keys.
        key_mask: optional `(B, S)` mask, merged with `value_mask`.
        attention_mask: optional `(B, T, S)` or `(B, H, T, S)` mask.
        use_causal_mask: whether to add a causal (lower-triangular) mask.
        causal_offset: absolute position of the first query (cache index).

    Returns:
        A boolean tensor broadcastable to `(B, H, T, S)`, or `None`.

    Raises:
        ValueError: if a mask has the wrong rank or a length that disagrees
            with `query` or `value`.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers.attention.attention_mask import (
        compute_attention_mask)
    q = np.zeros((2, 3, 4), "float32")
    v = np.zeros((2, 5, 4), "float32")
    m = compute_attention_mask(q, v, value_mask=np.ones((2, 5), bool),
                               use_causal_mask=True)
    tuple(m.shape)  # (2, 1, 3, 5)
    ```
    """
    q_len = query.shape[1]
    v_len = value.shape[1]
    masks = []
    if query_mask is not None:
        _check_token_mask(query_mask, "query_mask", q_len, "query_length")
        masks.append(ops.cast(query_mask, "bool")[:, None, :, None])  # (B,1,T,1)
    for name, token_mask in (("value_mask", value_mask), ("key_mask", key_mask)):
        if token_mask is not None:
            _check_token_mask(token_mask, name, v_len, "key_length")
            masks.append(ops.cast(token_mask, "bool")[:, None, None, :])  # (B,1,1,S)
    if attention_mask is not None:
        attention_mask = ops.convert_to_tensor(attention_mask)
        shape = tuple(attention_mask.shape)
        if len(shape) not in (3, 4):
            raise ValueError(
                "Received an invalid value for argument `attention_mask`, "
                "expected a boolean tensor of shape (batch, query_length, "
                "key_length) or (batch, heads, query_length, key_length). "
                f"Received: attention_mask.shape={shape}"
            )
        for axis, expected, name in ((-2, q_len, "query_length"), (-1, v_len, "key_length")):
            got = shape[axis]
            if got is not None and expected is not None and got not in (1, expected):
                raise ValueError(
                    "Received an invalid value for argument `attention_mask`, "
                    f"expected {name}={expected} on axis {axis}. Received: "
                    f"attention_mask.shape={shape}"
                )
        attention_mask = ops.cast(attention_mask, "bool")
        if len(shape) == 3:
            attention_mask = attention_mask[:, None, :, :]  # (B, 1, T, S)
        masks.append(attention_mask)
    if use_causal_mask:
        masks.append(
            causal_mask(ops.shape(query)[1], ops.shape(value)[1], causal_offset)
        )  # (T, S)
    return merge_masks(*masks)
