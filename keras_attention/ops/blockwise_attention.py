"""Memory-efficient exact attention: blocks, online softmax, recomputation.

`blockwise_attention` computes exactly `softmax(Q K^T * scale + bias) V`
(the contract of `scaled_dot_product_attention`) without ever holding the
`(B, H, T, S)` score matrix. Queries are cut into blocks of
`query_block_size` rows and keys into blocks of `key_block_size` columns;
for each query block the key blocks are visited in turn and the softmax is
accumulated online (Milakov & Gimelshein 2018; Rabe & Staats 2021; Dao et
al. 2022, "FlashAttention"): with a running row maximum `m`, running sum
`l` and running output `acc`, a block of scores `s` updates

    m' = max(m, rowmax(s))
    p = exp(s - m')
    l' = l * exp(m - m') + rowsum(p)
    acc' = acc * exp(m - m') + p V_block

and the output is `acc / l`. The forward pass keeps only the output and the
per-row log-sum-exp `L = m + log(l)`. The backward pass (a custom gradient)
recomputes each block's probabilities `P = exp(s - L)` and applies
FlashAttention-2's equations (Dao 2023), with `delta = rowsum(dO * O)`:

    dV += P^T dO        dP = dO V^T        dS = P * (dP - delta)
    dQ += dS K * scale  dK += dS^T Q * scale    d(bias) = dS

Memory is `O(T + S)` per head plus one `(query_block, key_block)` block of
scores, instead of `O(T * S)`; the work is the same matrix products plus one
recomputation of `Q K^T` in the backward pass.

Shape letters: B batch, T query length, S key length, H query heads, K
key/value heads (`H % K == 0`), G = H / K query heads per key/value head,
D head size, Dv value head size. Blocks are processed in the layout
`(B, K, G, T, D)`, so grouped-query attention never repeats keys or values.

This module imports nothing else from `keras_attention` except `ops`. It is
written in `keras.ops` except for two TensorFlow details: loops run with
`parallel_iterations=1` there (see `_loop`), and under XLA the backward
pass's sums over query rows (`dV`, `dK`) run as canonical dots
(`dot_layout.canonical_einsum`) for blocks of at least 256 rows.
"""

import math
import numbers

import keras
from keras import ops

from keras_attention.ops.attention import _check_broadcast_to_scores
from keras_attention.ops.attention import _check_inputs
from keras_attention.ops.dot_layout import canonical_einsum

# Finite fill value for masked logits (float32 arithmetic only): finite so
# that `m - m'` never computes `inf - inf`.
_NEG = -1e30


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_block_size(value, name):
    if not _is_int(value) or value < 1:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"positive integer. Received: {name}={value!r}"
        )
    return int(value)


def _dim(x, axis):
    """Static size of `x` on `axis`, or its dynamic size when unknown."""
    static = x.shape[axis]
    return static if static is not None else ops.shape(x)[axis]


def _ceil_div(a, b):
    if _is_int(a):
        return -(-a // b)
    return (a + b - 1) // b


def _pad_axis(x, axis, amount, value):
    """Append `amount` (int or scalar tensor) copies of `value` on `axis`."""
    if _is_int(amount) and amount == 0:
        return x
    shape = [_dim(x, i) for i in range(len(x.shape))]
    shape[axis] = amount
    filler = ops.full(shape, value, dtype=x.dtype)
    return ops.concatenate([x, filler], axis=axis)


def _to_blocks_layout(x, num_heads, kv_heads, lengths, pads, fill):
    """Mask or bias of rank <= 4 -> rank 5 `(B|1, K|1, G|1, Tp|1, Sp|1)`.

    Size-1 axes stay size 1 (broadcast); head, query and key axes of unknown
    static size are broadcast to their full size first. Full query and key
    axes are padded with `fill` to whole blocks (`pads`).
    """
    while len(x.shape) < 4:
        x = ops.expand_dims(x, 0)
    target = [_dim(x, 0), num_heads, lengths[0], lengths[1]]
    if any(x.shape[axis] is None for axis in (1, 2, 3)):
        x = ops.broadcast_to(
            x, [target[a] if x.shape[a] is None else _dim(x, a) for a in range(4)]
        )
    b, t, s = _dim(x, 0), _dim(x, 2), _dim(x, 3)
    if x.shape[1] == 1:
        x = ops.reshape(x, (b, 1, 1, t, s))  # (B|1, 1, 1, T|1, S|1)
    else:
        x = ops.reshape(
            x, (b, kv_heads, num_heads // kv_heads, t, s)
        )  # (B|1, K, G, T|1, S|1)
    if x.shape[3] != 1:
        x = _pad_axis(x, 3, pads[0], fill)  # (..., Tp, S|1)
    if x.shape[4] != 1:
        x = _pad_axis(x, 4, pads[1], fill)  # (..., Tp|1, Sp)
    return x


def _slice_block(x, t_start, t_size, s_start, s_size):
    """The `(t, s)` block of a rank-5 mask/bias; size-1 axes broadcast."""
    shape = [_dim(x, i) for i in range(5)]
    starts = [0, 0, 0, 0, 0]
    if x.shape[3] != 1:
        starts[3], shape[3] = t_start, t_size
    if x.shape[4] != 1:
        starts[4], shape[4] = s_start, s_size
    return ops.slice(x, starts, shape)


def _merge_groups(x):
    """(B, K, G, t, X) -> (B, K, G * t, X): one plain batched matmul per block."""
    shape = [_dim(x, i) for i in range(5)]
    return ops.reshape(x, (shape[0], shape[1], shape[2] * shape[3], shape[4]))


def _split_groups(x, groups):
    """(B, K, G * t, X) -> (B, K, G, t, X)."""
    shape = [_dim(x, i) for i in range(4)]
    return ops.reshape(
        x, (shape[0], shape[1], groups, shape[2] // groups, shape[3])
    )


def _loop(lower, upper, body, init):
    """`fori_loop` over blocks, one iteration at a time.

    A loop with exactly one step is a direct call. On TensorFlow the loop is
    a `tf.while_loop` with `parallel_iterations=1`: `keras.ops.fori_loop`
    keeps TensorFlow's default of 10, which lets independent steps (the
    inner loops of successive query blocks) run concurrently, each with its
    own block of scores, multiplying the memory by up to 100 in nested
    loops. Other backends run loop steps one at a time anyway.
    """
    if _is_int(lower) and _is_int(upper) and upper - lower == 1:
        return body(lower, init)
    if keras.backend.backend() != "tensorflow":
        return ops.fori_loop(lower, upper, body, init)
    import tensorflow as tf

    def step(i, state):
        return i + 1, body(i, state)

    return tf.while_loop(
        lambda i, _: i < upper,
        step,
        (ops.convert_to_tensor(lower, "int32"), init),
        parallel_iterations=1,
    )[1]


def blockwise_attention(
    query,
    key,
    value,
    mask=None,
    bias=None,
    causal=False,
    scale=None,
    causal_offset=0,
    query_block_size=1024,
    key_block_size=1024,
):
    """Exact attention in blocks, with an online softmax and recomputation.

    Returns the same values as `scaled_dot_product_attention` (up to float
    rounding) but never forms the `(B, H, T, S)` score matrix: memory grows
    as `T + S`, not `T * S`. The gradient is a custom one that recomputes
    each block of probabilities instead of storing them. Same contract:
    `(B, T, H, D)` layout, grouped-query heads, a boolean `mask` and a float
    `bias` broadcast to `(B, H, T, S)`, `causal` with `causal_offset`,
    float32 softmax statistics, and zeros for query rows with no attendable
    key. A causal mask is built per block (never as a `(T, S)` tensor), and
    key blocks entirely above the diagonal are skipped. There is no attention
    dropout and no weights are returned (the weights are the matrix this
    function avoids).

    Args:
        query: `(B, T, H, D)` tensor.
        key: `(B, S, K, D)` tensor, `H % K == 0`.
        value: `(B, S, K, Dv)` tensor.
        mask: optional boolean tensor broadcastable to `(B, H, T, S)`,
            `True` where the query may attend the key, or a list of such
            tensors, combined by logical AND block by block (so per-token
            `(B, 1, 1, S)` and `(B, 1, T, 1)` masks never broadcast to a
            `(B, 1, T, S)` tensor). A mask with full T and S axes is itself
            `O(T * S)`; for long sequences prefer `causal` and per-token
            masks.
        bias: optional float tensor broadcastable to `(B, H, T, S)`, added
            to the logits; its gradient is returned too.
        causal: whether query `i` may only attend keys `j <= i +
            causal_offset`.
        scale: logit scale; defaults to `1 / sqrt(D)`.
        causal_offset: absolute position of the first query (int or scalar
            integer tensor).
        query_block_size: rows per query block (clipped to T when T is
            shorter and static).
        key_block_size: columns per key block (clipped likewise to S).
            A step holds a few float32 `(B, H, query_block_size,
            key_block_size)` tensors: lower the sizes for many heads or
            large batches. The 1024 defaults were the fastest measured on
            CPU (fewer loop steps); GPUs favour smaller blocks.

    Returns:
        `(B, T, H, Dv)` output in the query's dtype.

    Raises:
        ValueError: on wrong ranks, mismatched head sizes or counts, masks
            or biases that cannot broadcast, or block sizes that are not
            positive integers.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops import blockwise_attention
    from keras_attention.ops import scaled_dot_product_attention
    q = np.random.rand(1, 70, 4, 8).astype("float32")
    kv = np.random.rand(1, 70, 2, 8).astype("float32")
    out = blockwise_attention(q, kv, kv, causal=True, query_block_size=32,
                              key_block_size=16)
    ref = scaled_dot_product_attention(q, kv, kv, causal=True)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    ```

    References:
        Rabe & Staats, 2021, "Self-attention Does Not Need O(n^2) Memory".
        Dao et al., 2022, "FlashAttention: Fast and Memory-Efficient Exact
        Attention with IO-Awareness"; Dao, 2023, "FlashAttention-2".
    """
    query_block_size = _check_block_size(query_block_size, "query_block_size")
    key_block_size = _check_block_size(key_block_size, "key_block_size")
    query = ops.convert_to_tensor(query)
    key = ops.convert_to_tensor(key, dtype=query.dtype)
    value = ops.convert_to_tensor(value, dtype=query.dtype)
    _check_inputs(query, key, value)
    if mask is None:
        masks = []
    elif isinstance(mask, (list, tuple)):
        masks = [ops.convert_to_tensor(m) for m in mask if m is not None]
    else:
        masks = [ops.convert_to_tensor(mask)]
    for m in masks:
        _check_broadcast_to_scores(m, "mask", query, key)
    if bias is not None:
        bias = ops.convert_to_tensor(bias)
        _check_broadcast_to_scores(bias, "bias", query, key)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])

    num_heads, kv_heads = query.shape[2], key.shape[2]
    groups = num_heads // kv_heads
    q_len, k_len = _dim(query, 1), _dim(key, 1)
    bq = min(query_block_size, q_len) if _is_int(q_len) else query_block_size
    bk = min(key_block_size, k_len) if _is_int(k_len) else key_block_size
    nq, nk = _ceil_div(q_len, bq), _ceil_div(k_len, bk)
    pad_q, pad_k = nq * bq - q_len, nk * bk - k_len
    lengths = (q_len, k_len)
    masks = [
        _to_blocks_layout(
            ops.cast(m, "bool"), num_heads, kv_heads, lengths, (pad_q, pad_k), False
        )
        for m in masks
    ]
    if bias is not None:
        bias_dtype = bias.dtype
        bias = _to_blocks_layout(
            bias, num_heads, kv_heads, lengths, (pad_q, pad_k), 0
        )
    # Key padding is masked per block; no mask op at all when nothing masks.
    key_padded = not (_is_int(pad_k) and pad_k == 0)
    if not causal:
        offset = None
    elif _is_int(causal_offset):
        # A Python int: a tensor made here would be a value of the caller's
        # trace that the custom gradient closes over, which jax2tf cannot
        # trace when `model.export` on JAX saves the gradient.
        offset = int(causal_offset)
    else:
        offset = ops.cast(causal_offset, "int32")
    config = dict(
        bq=bq, bk=bk, nq=nq, nk=nk, q_len=q_len, k_len=k_len,
        key_padded=key_padded, causal=causal, offset=offset, scale=scale,
        masks=masks, groups=groups,
    )

    def to_blocks(q, k, v):
        q = q * ops.cast(scale, q.dtype)  # scaled once, as the full path
        b = _dim(q, 0)
        q = ops.reshape(q, (b, q_len, kv_heads, groups, q.shape[-1]))  # (B, T, K, G, D)
        q = ops.transpose(q, (0, 2, 3, 1, 4))  # (B, K, G, T, D)
        k = ops.transpose(k, (0, 2, 1, 3))  # (B, K, S, D)
        v = ops.transpose(v, (0, 2, 1, 3))  # (B, K, S, Dv)
        q = _pad_axis(q, 3, pad_q, 0)  # (B, K, G, Tp, D)
        k = _pad_axis(k, 2, pad_k, 0)  # (B, K, Sp, D)
        v = _pad_axis(v, 2, pad_k, 0)  # (B, K, Sp, Dv)
        return q, k, v

    def from_blocks(x, length, dtype):
        """(B, K, G, Tp, X) -> (B, T, H, X), or (B, K, Sp, X) -> (B, S, K, X)."""
        if len(x.shape) == 5:
            x = ops.transpose(x[:, :, :, :length], (0, 3, 1, 2, 4))  # (B, T, K, G, X)
            x = ops.reshape(
                x, (_dim(x, 0), length, num_heads, x.shape[-1])
            )  # (B, T, H, X)
        else:
            x = ops.transpose(x[:, :, :length], (0, 2, 1, 3))  # (B, S, K, X)
        return ops.cast(x, dtype)

    def attend(q, k, v, bias_blocks):
        qb, kb, vb = to_blocks(q, k, v)
        out5, lse = _forward(qb, kb, vb, bias_blocks, config)
        output = from_blocks(out5, q_len, query.dtype)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            d_out = ops.cast(upstream, value.dtype)
            d_out = ops.reshape(
                d_out, (_dim(d_out, 0), q_len, kv_heads, groups, value.shape[-1])
            )  # (B, T, K, G, Dv)
            d_out = _pad_axis(
                ops.transpose(d_out, (0, 2, 3, 1, 4)), 3, pad_q, 0
            )  # (B, K, G, Tp, Dv)
            dq, dk, dv, dbias = _backward(
                qb, kb, vb, bias_blocks, out5, lse, d_out, config
            )
            grads = (
                from_blocks(dq, q_len, query.dtype),
                from_blocks(dk, k_len, key.dtype),
                from_blocks(dv, k_len, value.dtype),
            )
            if bias_blocks is not None:
                # Gradient of the padded rank-5 bias; autodiff maps it back
                # through the padding and reshape to the caller's bias.
                grads += (ops.cast(dbias, bias_dtype),)
            return grads

        return output, grad

    if bias is None:
        fn = ops.custom_gradient(lambda q, k, v: attend(q, k, v, None))
        return fn(query, key, value)
    fn = ops.custom_gradient(attend)
    return fn(query, key, value, bias)


def _valid(config, t_start, s_start):
    """Boolean `(1|B, 1|K, 1|G, bq|1, bk|1)` block of attendable pairs, or None."""
    bq, bk = config["bq"], config["bk"]
    valid = None
    for mask in config["masks"]:
        block = _slice_block(mask, t_start, bq, s_start, bk)
        valid = block if valid is None else ops.logical_and(valid, block)
    cols = s_start + ops.arange(bk, dtype="int32")  # (bk,)
    if config["key_padded"]:
        in_range = ops.reshape(ops.less(cols, config["k_len"]), (1, 1, 1, 1, bk))
        valid = in_range if valid is None else ops.logical_and(valid, in_range)
    if config["causal"]:
        rows = t_start + ops.arange(bq, dtype="int32") + config["offset"]  # (bq,)
        tri = ops.greater_equal(rows[:, None], cols[None, :])  # (bq, bk)
        tri = ops.reshape(tri, (1, 1, 1, bq, bk))
        valid = tri if valid is None else ops.logical_and(valid, tri)
    return valid


def _scores(q_block, k_block, bias_blocks, valid, t_start, s_start, config):
    """float32 logits of one block, masked with the finite fill value."""
    s = ops.einsum(
        "bktd,bksd->bkts", _merge_groups(q_block), k_block
    )  # (B, K, G * bq, bk)
    s = _split_groups(s, config["groups"])  # (B, K, G, bq, bk)
    s = ops.cast(s, "float32")
    if bias_blocks is not None:
        block = _slice_block(bias_blocks, t_start, config["bq"], s_start, config["bk"])
        s = s + ops.cast(block, "float32")
    if valid is not None:
        s = ops.where(valid, s, _NEG)
    return s


def _key_blocks_needed(config, t_start):
    """Number of leading key blocks a query block can see (causal skipping)."""
    if not config["causal"]:
        return config["nk"]
    last_key = t_start + config["bq"] + config["offset"]  # exclusive bound
    needed = (last_key + config["bk"] - 1) // config["bk"]
    return ops.clip(ops.convert_to_tensor(needed, "int32"), 0, config["nk"])


def _first_query_block(config, s_start):
    """First query block that can see a key block (causal skipping)."""
    if not config["causal"]:
        return 0
    first = ops.floor_divide(s_start - config["offset"], config["bq"])
    return ops.clip(ops.convert_to_tensor(first, "int32"), 0, config["nq"])


def _forward(q, k, v, bias_blocks, config):
    """Online-softmax pass. Returns (output (B,K,G,Tp,Dv) f32, lse (B,K,G,Tp))."""
    bq, bk = config["bq"], config["bk"]
    b, kh, g, tp, _ = (_dim(q, i) for i in range(5))
    dv = v.shape[-1]

    def query_block(i, buffers):
        out_buf, lse_buf = buffers
        t_start = i * bq
        q_i = ops.slice(q, (0, 0, 0, t_start, 0), (b, kh, g, bq, q.shape[-1]))

        def key_block(j, state):
            m, l, acc = state
            s_start = j * bk
            k_j = ops.slice(k, (0, 0, s_start, 0), (b, kh, bk, k.shape[-1]))
            v_j = ops.slice(v, (0, 0, s_start, 0), (b, kh, bk, dv))
            valid = _valid(config, t_start, s_start)
            s = _scores(q_i, k_j, bias_blocks, valid, t_start, s_start, config)
            m_new = ops.maximum(m, ops.max(s, axis=-1))  # (B, K, G, bq)
            p = ops.exp(s - m_new[..., None])  # (B, K, G, bq, bk)
            if valid is not None:
                p = ops.where(valid, p, 0.0)
            correction = ops.exp(m - m_new)  # (B, K, G, bq)
            l = l * correction + ops.sum(p, axis=-1)
            pv = ops.einsum(
                "bkts,bksd->bktd", _merge_groups(ops.cast(p, v.dtype)), v_j
            )  # (B, K, G * bq, Dv)
            pv = _split_groups(pv, config["groups"])  # (B, K, G, bq, Dv)
            acc = acc * correction[..., None] + ops.cast(pv, "float32")
            return m_new, l, acc

        state = (
            ops.full((b, kh, g, bq), _NEG, dtype="float32"),
            ops.zeros((b, kh, g, bq), dtype="float32"),
            ops.zeros((b, kh, g, bq, dv), dtype="float32"),
        )
        m, l, acc = _loop(0, _key_blocks_needed(config, t_start), key_block, state)
        attended = ops.greater(l, 0.0)  # rows with an attendable key
        safe_l = ops.where(attended, l, 1.0)
        out_i = acc / safe_l[..., None]  # (B, K, G, bq, Dv)
        lse_i = ops.where(attended, m + ops.log(safe_l), 0.0)  # (B, K, G, bq)
        if out_buf is None:
            return out_i, lse_i
        out_buf = ops.slice_update(out_buf, (0, 0, 0, t_start, 0), out_i)
        lse_buf = ops.slice_update(lse_buf, (0, 0, 0, t_start), lse_i)
        return out_buf, lse_buf

    if _is_int(config["nq"]) and config["nq"] == 1:
        return query_block(0, (None, None))
    buffers = (
        ops.zeros((b, kh, g, tp, dv), dtype="float32"),
        ops.zeros((b, kh, g, tp), dtype="float32"),
    )
    return _loop(0, config["nq"], query_block, buffers)


def _backward(q, k, v, bias_blocks, out, lse, d_out, config):
    """Recomputing backward pass; returns float32 (dq, dk, dv, dbias)."""
    bq, bk, scale = config["bq"], config["bk"], config["scale"]
    b, kh, g, tp, d = (_dim(q, i) for i in range(5))
    sp, dv = _dim(k, 2), v.shape[-1]
    delta = ops.sum(
        ops.cast(d_out, "float32") * out, axis=-1
    )  # (B, K, G, Tp) = rowsum(dO * O)
    with_bias = bias_blocks is not None
    # dV and dK sum over the block's G * bq query rows. Under XLA, summed
    # as canonical dots (`dot_layout`) from 256 rows on, where that was
    # measured faster (`benchmarks/attention_core.py --blockwise
    # --einsum-gradients`: 1.11x at 256 rows, slower at 128).
    rows = g * bq if _is_int(g) and _is_int(bq) else None
    sum_rows = canonical_einsum if rows is not None and rows >= 256 else ops.einsum

    def key_block(j, buffers):
        dq_buf, dk_buf, dv_buf, db_buf = buffers
        s_start = j * bk
        k_j = ops.slice(k, (0, 0, s_start, 0), (b, kh, bk, d))
        v_j = ops.slice(v, (0, 0, s_start, 0), (b, kh, bk, dv))

        def query_block(i, state):
            dk_j, dv_j, dq_buf, db_buf = state
            t_start = i * bq
            q_i = ops.slice(q, (0, 0, 0, t_start, 0), (b, kh, g, bq, d))
            do_i = ops.slice(d_out, (0, 0, 0, t_start, 0), (b, kh, g, bq, dv))
            lse_i = ops.slice(lse, (0, 0, 0, t_start), (b, kh, g, bq))
            delta_i = ops.slice(delta, (0, 0, 0, t_start), (b, kh, g, bq))
            valid = _valid(config, t_start, s_start)
            s = _scores(q_i, k_j, bias_blocks, valid, t_start, s_start, config)
            p = ops.exp(s - lse_i[..., None])  # (B, K, G, bq, bk)
            if valid is not None:
                p = ops.where(valid, p, 0.0)
            dv_j = dv_j + ops.cast(
                sum_rows(
                    "bkts,bktd->bksd",
                    _merge_groups(ops.cast(p, v.dtype)),
                    _merge_groups(do_i),
                ),
                "float32",
            )  # (B, K, bk, Dv)
            dp = ops.einsum(
                "bktd,bksd->bkts", _merge_groups(do_i), v_j
            )  # (B, K, G * bq, bk)
            dp = ops.cast(_split_groups(dp, config["groups"]), "float32")
            ds = p * (dp - delta_i[..., None])  # (B, K, G, bq, bk)
            ds_c = _merge_groups(ops.cast(ds, q.dtype))  # (B, K, G * bq, bk)
            dq_i = ops.einsum("bkts,bksd->bktd", ds_c, k_j)  # (B, K, G * bq, D)
            dq_i = ops.cast(_split_groups(dq_i, config["groups"]), "float32") * scale
            start = (0, 0, 0, t_start, 0)
            if dq_buf.shape[3] == bq:  # a single query block
                dq_buf = dq_buf + dq_i
            else:
                dq_buf = ops.slice_update(
                    dq_buf, start, ops.slice(dq_buf, start, ops.shape(dq_i)) + dq_i
                )
            dk_j = dk_j + ops.cast(
                sum_rows("bkts,bktd->bksd", ds_c, _merge_groups(q_i)),
                "float32",
            )  # (B, K, bk, D); q is pre-scaled
            if with_bias:
                db_buf = _add_bias_block(db_buf, ds, t_start, s_start, config)
            return dk_j, dv_j, dq_buf, db_buf

        state = (
            ops.zeros((b, kh, bk, d), dtype="float32"),
            ops.zeros((b, kh, bk, dv), dtype="float32"),
            dq_buf,
            db_buf,
        )
        lower = _first_query_block(config, s_start)
        dk_j, dv_j, dq_buf, db_buf = _loop(lower, config["nq"], query_block, state)
        if dk_buf.shape[2] == bk:  # a single key block
            return dq_buf, dk_j, dv_j, db_buf
        dk_buf = ops.slice_update(dk_buf, (0, 0, s_start, 0), dk_j)
        dv_buf = ops.slice_update(dv_buf, (0, 0, s_start, 0), dv_j)
        return dq_buf, dk_buf, dv_buf, db_buf

    if with_bias:
        db_buf = ops.zeros(ops.shape(bias_blocks), dtype="float32")
    else:
        db_buf = ops.zeros((), dtype="float32")  # unused placeholder
    buffers = (
        ops.zeros((b, kh, g, tp, d), dtype="float32"),
        ops.zeros((b, kh, sp, d), dtype="float32"),
        ops.zeros((b, kh, sp, dv), dtype="float32"),
        db_buf,
    )
    dq, dk, dv_, db = _loop(0, config["nk"], key_block, buffers)
    return dq, dk, dv_, (db if with_bias else None)


def _add_bias_block(db_buf, ds, t_start, s_start, config):
    """Add a block of `dS` into the bias-gradient buffer (summing broadcasts)."""
    axes = [
        axis for axis in range(5) if db_buf.shape[axis] == 1 and ds.shape[axis] != 1
    ]
    if axes:
        ds = ops.sum(ds, axis=axes, keepdims=True)
    if db_buf.shape[3] != 1 or db_buf.shape[4] != 1:
        starts = [0, 0, 0, 0, 0]
        if db_buf.shape[3] != 1:
            starts[3] = t_start
        if db_buf.shape[4] != 1:
            starts[4] = s_start
        if tuple(db_buf.shape) == tuple(ds.shape):
            return db_buf + ds
        current = ops.slice(db_buf, starts, ops.shape(ds))
        return ops.slice_update(db_buf, starts, current + ds)
    return db_buf + ds
