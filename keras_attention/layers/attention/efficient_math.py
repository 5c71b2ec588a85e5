"""Shared maths of the efficient attention layers, on `keras.ops`.

Two families:

- FAVOR+ (Performer): orthogonal random features, the positive softmax-kernel
  feature map and linear attention with it, bidirectional and causal
  (chunked prefix sums).
- Block-sparse attention (Local, BigBird): each block of `b` queries attends
  `L` gathered key positions; masks, biases and padding are gathered at the
  same positions, so the result equals exact attention with the equivalent
  sparse mask while memory stays `O(T * L)`.

Shape letters: B batch, T query length, S key length, H query heads, K
key/value heads (`H % K == 0`), D head size, Dv value head size, M random
features, N query blocks, b block size, L gathered keys per query block,
P pattern heads (1 when every head shares the pattern, else H).
"""

import math

import keras
from keras import ops

from keras_attention.layers.attention.attention_mask import compute_attention_mask
from keras_attention.ops import causal_mask
from keras_attention.ops import masked_softmax
from keras_attention.ops import merge_masks
from keras_attention.ops import scaled_dot_product_attention

# ---------------------------------------------------------------------------
# Shared argument handling
# ---------------------------------------------------------------------------


def _received(argument, value):
    if hasattr(value, "shape"):
        return f"{argument}.shape={tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"{argument} of type {type(value).__name__}"
    return f"{argument}={value!r}"


def reject_argument(layer, argument, value, expected):
    """Raise the Keras-style error for a call argument `layer` cannot honour."""
    raise ValueError(
        f"Received an invalid value for argument `{argument}`, expected "
        f"{expected}; {type(layer).__name__} does not support it. Received: "
        f"{_received(argument, value)}"
    )


def reject_cache_method(layer, method, missing="a KV cache"):
    """Raise for a KV-cache helper `layer` does not have (`missing`: what
    it does not support, e.g. "a cross-attention cache")."""
    raise ValueError(
        f"{type(layer).__name__} does not support {missing}, so `{method}` is "
        "unavailable (MultiHeadAttention provides cached decoding). Received: "
        f"a call to `{method}`"
    )


def check_no_cache(layer, cache, cache_index):
    """For layers without a KV cache (Linformer): reject `cache` /
    `cache_index`."""
    if cache is not None:
        reject_argument(layer, "cache", cache, "None (no KV cache)")
    if cache_index is not None:
        reject_argument(layer, "cache_index", cache_index, "None (no KV cache)")


def token_masks(query, key, query_mask=None, value_mask=None, key_mask=None):
    """Per-token masks `(B, T)` and `(B, S)` (or `None`), validated and
    merged by `compute_attention_mask`, never expanded to `(T, S)`."""
    q_mask = compute_attention_mask(query, key, query_mask=query_mask)
    k_mask = compute_attention_mask(
        query, key, value_mask=value_mask, key_mask=key_mask
    )
    if q_mask is not None:
        q_mask = q_mask[:, 0, :, 0]  # (B, T)
    if k_mask is not None:
        k_mask = k_mask[:, 0, 0, :]  # (B, S)
    return q_mask, k_mask


# ---------------------------------------------------------------------------
# FAVOR+ (Choromanski et al., 2021)
# ---------------------------------------------------------------------------


def orthogonal_random_features(num_features, dim, seed=None):
    """Random projection `W` of shape `(M, D)` with orthogonal row blocks.

    Rows come in blocks of `D` mutually orthogonal directions (QR of a
    Gaussian matrix); each row is rescaled by the norm of an independent
    `N(0, I_D)` vector, so every row is marginally `N(0, I_D)` (Choromanski
    et al. 2021, section 2.4) while rows within a block are exactly
    orthogonal, which lowers the variance of the softmax-kernel estimate.

    Args:
        num_features: M, the number of random features.
        dim: D, the head size.
        seed: `None`, an int or a `keras.random.SeedGenerator`.

    Returns:
        float32 tensor of shape `(M, D)`.
    """
    num_blocks = -(-num_features // dim)
    # One draw (so an int seed gives independent directions and norms).
    gaussian = keras.random.normal(
        (num_blocks, dim, 2 * dim), dtype="float32", seed=seed
    )  # (blocks, D, 2 D)
    q, r = ops.qr(gaussian[:, :, :dim])  # (blocks, D, D), orthonormal columns
    # Fix the column signs (positive diag(R)): Q is then Haar-distributed,
    # i.e. each direction is uniform on the sphere (Householder QR alone
    # biases the signs, and with them the kernel estimate).
    signs = ops.sign(ops.diagonal(r, axis1=-2, axis2=-1))  # (blocks, D)
    q = q * ops.where(ops.equal(signs, 0.0), 1.0, signs)[:, None, :]
    rows = ops.reshape(ops.transpose(q, (0, 2, 1)), (num_blocks * dim, dim))
    norms = ops.norm(
        ops.reshape(ops.transpose(gaussian[:, :, dim:], (0, 2, 1)), (-1, dim)),
        axis=-1,
    )  # (blocks * D,): norms of independent N(0, I_D) vectors
    return (rows * norms[:, None])[:num_features]  # (M, D)


# How far above its row maximum a query feature may be lifted by the key sums
# (`positive_random_features`' `row_offset`): features stay below
# exp(_MAX_QUERY_LIFT) ~ 2e17, far from float32 overflow.
_MAX_QUERY_LIFT = 40.0


def positive_random_features(x, projection, is_query, valid=None,
                             return_stabilizer=False, row_offset=None):
    """FAVOR+ positive features `phi(x) = exp(W x - |x|^2 / 2) / sqrt(M)`.

    `E[phi(x) . phi(y)] = exp(x . y)` (Choromanski et al. 2021, Lemma 1).
    Inputs are pre-scaled by `D^-1/4`, so `phi(q) . phi(k)` estimates the
    softmax kernel `exp(q . k / sqrt(D))`. For numerical stability a constant
    is subtracted inside the exponent: per row for queries, and one maximum
    over all (valid) keys and features for keys -- both cancel in the
    attention normalization. The constant includes the `|x|^2 / 2` term, so
    the largest feature of a key set (or of a row, without `row_offset`) is
    exactly `1 / sqrt(M)`: long queries and keys do not underflow. Computed
    in float32.

    Args:
        x: `(B, L, heads, D)` queries or keys.
        projection: `(M, D)` random projection.
        is_query: whether `x` holds queries (row-wise stabilizer).
        valid: optional boolean `(B, L)` mask; invalid keys get zero features
            and are left out of the key stabilizer.
        return_stabilizer: also return the subtracted constant,
            `(B, L, heads, 1)` for queries, `(B, 1, heads, 1)` for keys.
        row_offset: optional float32, broadcastable to `(B, L, heads, M)`
            (queries only): log-weights of the features, the log of the
            key feature sums a query's features will be dotted with. The
            row constant is then `max_m(exponent_m + row_offset_m)`, so the
            largest term of the attention denominator `phi(q) . sum_j
            phi(k_j)` is `1 / sqrt(M)` and the denominator cannot underflow
            (its reciprocal's gradient would overflow); it is lowered to at
            most `_MAX_QUERY_LIFT` below the row's largest exponent, so the
            features cannot overflow, and that bound is also what a row
            with no keys (very negative offsets) gets.

    Returns:
        float32 tensor `(B, L, heads, M)`, and the stabilizer when
        `return_stabilizer=True`.
    """
    x = ops.cast(x, "float32")
    projection = ops.cast(projection, "float32")
    dim = x.shape[-1]
    num_features = projection.shape[0]
    x = x * (float(dim) ** -0.25)
    proj = ops.einsum("blhd,md->blhm", x, projection)  # (B, L, heads, M)
    half_norm = 0.5 * ops.sum(ops.square(x), axis=-1, keepdims=True)  # (B,L,h,1)
    exponent = proj - half_norm  # (B, L, heads, M)
    if is_query:
        stabilizer = ops.max(exponent, axis=-1, keepdims=True)  # (B, L, heads, 1)
        if row_offset is not None:
            lifted = ops.max(exponent + row_offset, axis=-1, keepdims=True)
            stabilizer = ops.maximum(lifted, stabilizer - _MAX_QUERY_LIFT)
    else:
        masked = exponent
        if valid is not None:
            masked = ops.where(valid[:, :, None, None], exponent, -1e30)
        stabilizer = ops.max(masked, axis=(1, 3), keepdims=True)  # (B,1,heads,1)
    stabilizer = ops.stop_gradient(stabilizer)
    shifted = exponent - stabilizer
    if valid is not None:
        # Zero features for invalid keys by their exponent, not by a product
        # after `exp`: in a row with no valid key the stabilizer is -1e30,
        # `exp(shifted)` overflows, and `inf * 0` gave NaN gradients.
        shifted = ops.where(valid[:, :, None, None], shifted, -1e30)
    features = ops.exp(shifted) / math.sqrt(num_features)
    if return_stabilizer:
        return features, stabilizer
    return features  # (B, L, heads, M)


def _log_key_sums(key_sums, groups):
    """`(B, L, K, M)` key feature sums -> `(B, L, K * G, M)` log offsets for
    grouped query heads (`positive_random_features`' `row_offset`). Sums
    below 1e-37 (zero where no key is attended) count as 1e-37, so no `-inf`
    arises (`tf.debugging.enable_check_numerics` stays quiet) and such rows
    get the lift bound. No gradient: it only picks the stabilizer."""
    key_sums = ops.stop_gradient(key_sums)
    if groups > 1:
        key_sums = ops.repeat(key_sums, groups, axis=2)  # head h -> kv head h // G
    return ops.log(ops.maximum(key_sums, 1e-37))


def _group_queries(features, kv_heads):
    """`(B, T, H, M) -> (B, T, K, G, M)` for grouped-query heads."""
    shape = ops.shape(features)
    # Static G (heads are static): with a dynamic batch, `-1` would leave
    # it unknown to the reshapes downstream.
    groups = features.shape[2] // kv_heads
    return ops.reshape(
        features, (shape[0], shape[1], kv_heads, groups, features.shape[3])
    )  # (B, T, K, G, M)


def _safe_divide(numerator, denominator):
    """`numerator / denominator`, zero where the denominator is zero."""
    positive = ops.greater(denominator, 0.0)
    safe = ops.where(positive, denominator, 1.0)
    return ops.where(positive, numerator / safe, 0.0)


def favor_attention(
    query,
    key,
    value,
    projection,
    causal=False,
    query_mask=None,
    key_mask=None,
    chunk_size=64,
):
    """Softmax attention approximated by FAVOR+ in time linear in T and S.

    Bidirectional: `out = phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1)`.
    Causal: the same with prefix sums over keys `j <= i`, computed chunk by
    chunk (exact within a chunk, a running `phi(K)^T V` state between
    chunks), so memory is `O(T * chunk + (T / chunk) * M * Dv)`. Query `i`
    sees keys `j <= i` (top-left aligned, as `causal_mask`).

    Numerics: the key features share one stabilizer (the sequence's largest
    key exponent), and each query row's is set by the key sums it divides
    by (every key, or its prefix when causal), so the largest term of every
    denominator is `1 / sqrt(M)` (see `positive_random_features`). The one
    limit: a causal query whose visible keys all lie more than
    `_MAX_QUERY_LIFT` (40) e-folds below the sequence's largest key
    exponent gets a denominator below `1 / sqrt(M)` (about
    `exp(40 - spread)`); its reciprocal's gradient overflows float32 only
    past a spread of about 84.

    Args:
        query: `(B, T, H, D)`.
        key: `(B, S, K, D)`.
        value: `(B, S, K, Dv)`.
        projection: `(M, D)` random projection.
        causal: whether query `i` only attends keys `j <= i`.
        query_mask: optional boolean `(B, T)`; padded queries return zeros.
        key_mask: optional boolean `(B, S)`; padded keys contribute nothing.
        chunk_size: query/key chunk of the causal prefix sums.

    Returns:
        float32 tensor `(B, T, H, Dv)`. Rows with no valid key are zeros.
    """
    kv_heads = key.shape[2]
    value = ops.cast(value, "float32")
    if causal:
        # Keys past T are never attended; shorter keys are padded (masked).
        q_len, k_len = ops.shape(query)[1], ops.shape(key)[1]
        if key_mask is None:
            key_mask = ops.ones((ops.shape(key)[0], k_len), dtype="bool")
        if isinstance(q_len - k_len, int):
            # A static pad width (JAX, XLA): also for one symbolic length on
            # both sides (shape-polymorphic export on JAX), where the
            # difference is 0 though neither length is an int.
            extra = max(q_len - k_len, 0)
        else:
            extra = ops.maximum(q_len - k_len, 0)
        key = ops.pad(key, ((0, 0), (0, extra), (0, 0), (0, 0)))[:, :q_len]
        value = ops.pad(value, ((0, 0), (0, extra), (0, 0), (0, 0)))[:, :q_len]
        key_mask = ops.pad(ops.cast(key_mask, "bool"), ((0, 0), (0, extra)))
        key_mask = key_mask[:, :q_len]  # (B, T)
    k_feat = positive_random_features(key, projection, False, key_mask)  # (B,S,K,M)
    # The sums of the key features each query row is normalized by (every
    # key, or its prefix when causal) set the row's stabilizer.
    if causal:
        key_sums = ops.cumsum(k_feat, axis=1)  # (B, T, K, M)
    else:
        key_sums = ops.sum(k_feat, axis=1, keepdims=True)  # (B, 1, K, M)
    q_feat = positive_random_features(
        query, projection, True,
        row_offset=_log_key_sums(key_sums, query.shape[2] // kv_heads),
    )  # (B, T, H, M)
    q_feat = _group_queries(q_feat, kv_heads)  # (B, T, K, G, M)
    if causal:
        numerator, denominator = _causal_linear_attention(
            q_feat, k_feat, value, chunk_size
        )
    else:
        kv = ops.einsum("bskm,bske->bkme", k_feat, value)  # (B, K, M, Dv)
        k_sum = key_sums[:, 0]  # (B, K, M)
        numerator = ops.einsum("btkgm,bkme->btkge", q_feat, kv)  # (B,T,K,G,Dv)
        denominator = ops.einsum("btkgm,bkm->btkg", q_feat, k_sum)  # (B,T,K,G)
    out = _safe_divide(numerator, denominator[..., None])  # (B, T, K, G, Dv)
    shape = ops.shape(out)
    out = ops.reshape(out, (shape[0], shape[1], -1, shape[4]))  # (B, T, H, Dv)
    if query_mask is not None:
        out = out * ops.cast(query_mask, "float32")[:, :, None, None]
    return out


NO_STABILIZER = -1e30  # the stabilizer of an empty running state


def favor_running_attention(query, key, value, projection, state, key_valid,
                            causal=True):
    """FAVOR+ attention of T new tokens over a running state and themselves.

    The state summarises every key accumulated so far, `S = sum_j phi(k_j)
    [v_j, 1]` (`(B, K, M, Dv + 1)`: the numerator `phi(K)^T V` and, in the
    last column, the normalizer `phi(K)^T 1`), kept on a common stabilizer
    `C` (`(B, K)`): each key's features carry their own stabilizer `c_j`
    and enter as `phi(k_j) exp(c_j - C)`; when a larger one arrives the
    state is rescaled, as an online softmax does. So decoding one token
    costs `O(M Dv)` per head whatever the context length, and gives the
    estimate of a full causal pass (`favor_attention`; the stabilizers
    cancel in the ratio).

    New query `t` attends the state and the new keys `s <= t` (every new
    key when not causal) that are in `key_valid`; only those keys are added
    to the state.

    Args:
        query: `(B, T, H, D)`.
        key: `(B, T, K, D)`.
        value: `(B, T, K, Dv)`.
        projection: `(M, D)` random projection.
        state: `(summary (B, K, M, Dv + 1), stabilizer (B, K))` float32;
            an empty state is zeros and `NO_STABILIZER`.
        key_valid: boolean `(B, T)`: the new keys to attend and accumulate.
        causal: whether new query `t` only attends new keys `s <= t`.

    Returns:
        `(out, (summary, stabilizer))`: float32 `(B, T, H, Dv)` (rows with
        no attendable key are zeros) and the updated state.
    """
    kv_heads = key.shape[2]
    summary, common = (ops.cast(x, "float32") for x in state)
    k_feat, own = positive_random_features(
        key, projection, True, return_stabilizer=True
    )  # (B, T, K, M), (B, T, K, 1)
    valid = ops.cast(key_valid, "bool")[:, :, None]  # (B, T, 1)
    own = ops.where(valid, own[..., 0], NO_STABILIZER)  # (B, T, K)
    new_common = ops.maximum(common, ops.max(own, axis=1))  # (B, K)
    summary = summary * ops.exp(common - new_common)[:, :, None, None]
    weights = ops.exp(own - new_common[:, None, :]) * ops.cast(valid, "float32")
    k_feat = k_feat * weights[..., None]  # (B, T, K, M)
    # Key sums each new query is normalized by: the state's and the new
    # keys it attends (as in `favor_attention`).
    if causal:
        new_sums = ops.cumsum(k_feat, axis=1)  # (B, T, K, M)
    else:
        new_sums = ops.sum(k_feat, axis=1, keepdims=True)  # (B, 1, K, M)
    key_sums = summary[:, None, :, :, -1] + new_sums  # (B, T|1, K, M)
    q_feat = _group_queries(
        positive_random_features(
            query, projection, True,
            row_offset=_log_key_sums(key_sums, query.shape[2] // kv_heads),
        ),
        kv_heads,
    )  # (B, T, K, G, M)
    value = ops.cast(value, "float32")
    value_and_one = ops.concatenate(
        [value, ops.ones_like(value[..., :1])], axis=-1
    )  # (B, T, K, Dv + 1)
    out = ops.einsum("btkgm,bkme->btkge", q_feat, summary)  # (B, T, K, G, Dv+1)
    scores = ops.einsum("btkgm,bskm->bkgts", q_feat, k_feat)  # (B, K, G, T, T)
    if causal:
        length = ops.shape(scores)[-1]
        scores = scores * ops.cast(causal_mask(length, length), "float32")
    out = out + ops.einsum("bkgts,bske->btkge", scores, value_and_one)
    summary = summary + ops.einsum("btkm,btke->bkme", k_feat, value_and_one)
    out = _safe_divide(out[..., :-1], out[..., -1:])  # (B, T, K, G, Dv)
    shape = ops.shape(out)
    out = ops.reshape(out, (shape[0], shape[1], -1, shape[4]))  # (B, T, H, Dv)
    return out, (summary, new_common)


def _causal_linear_attention(q_feat, k_feat, value, chunk_size):
    """Causal numerator `(B, T, K, G, Dv)` and denominator `(B, T, K, G)`."""
    length = q_feat.shape[1]
    if isinstance(length, int):  # not unknown, nor symbolic (JAX export)
        chunk_size = min(chunk_size, length)
    q_len = ops.shape(q_feat)[1]
    num_chunks = (q_len + chunk_size - 1) // chunk_size
    pad = num_chunks * chunk_size - q_len
    q_feat = ops.pad(q_feat, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))
    k_feat = ops.pad(k_feat, ((0, 0), (0, pad), (0, 0), (0, 0)))
    value = ops.pad(value, ((0, 0), (0, pad), (0, 0), (0, 0)))
    batch = ops.shape(q_feat)[0]
    kv_heads, groups, features = q_feat.shape[2], q_feat.shape[3], q_feat.shape[4]
    value_dim = value.shape[-1]
    qc = ops.reshape(
        q_feat, (batch, num_chunks, chunk_size, kv_heads, groups, features)
    )  # (B, Nc, c, K, G, M)
    kc = ops.reshape(
        k_feat, (batch, num_chunks, chunk_size, kv_heads, features)
    )  # (B, Nc, c, K, M)
    vc = ops.reshape(
        value, (batch, num_chunks, chunk_size, kv_heads, value_dim)
    )  # (B, Nc, c, K, Dv)
    # Inter-chunk: state of all earlier chunks (exclusive prefix sum).
    chunk_kv = ops.einsum("bnckm,bncke->bnkme", kc, vc)  # (B, Nc, K, M, Dv)
    chunk_k = ops.sum(kc, axis=2)  # (B, Nc, K, M)
    state_kv = ops.cumsum(chunk_kv, axis=1) - chunk_kv  # (B, Nc, K, M, Dv)
    state_k = ops.cumsum(chunk_k, axis=1) - chunk_k  # (B, Nc, K, M)
    numerator = ops.einsum("bnckgm,bnkme->bnckge", qc, state_kv)  # (B,Nc,c,K,G,Dv)
    denominator = ops.einsum("bnckgm,bnkm->bnckg", qc, state_k)  # (B,Nc,c,K,G)
    # Intra-chunk: exact lower-triangular products.
    scores = ops.einsum("bnckgm,bnskm->bnkgcs", qc, kc)  # (B, Nc, K, G, c, c)
    tril = ops.cast(
        ops.greater_equal(
            ops.arange(chunk_size)[:, None], ops.arange(chunk_size)[None, :]
        ),
        "float32",
    )  # (c, c)
    scores = scores * tril
    numerator = numerator + ops.einsum(
        "bnkgcs,bnske->bnckge", scores, vc
    )  # (B, Nc, c, K, G, Dv)
    denominator = denominator + ops.transpose(
        ops.sum(scores, axis=-1), (0, 1, 4, 2, 3)
    )  # (B, Nc, c, K, G)
    numerator = ops.reshape(
        numerator, (batch, num_chunks * chunk_size, kv_heads, groups, value_dim)
    )[:, :q_len]  # (B, T, K, G, Dv)
    denominator = ops.reshape(
        denominator, (batch, num_chunks * chunk_size, kv_heads, groups)
    )[:, :q_len]  # (B, T, K, G)
    return numerator, denominator


# ---------------------------------------------------------------------------
# Block-sparse attention (LocalAttention, BigBirdAttention)
# ---------------------------------------------------------------------------


def gather_pairs(x, query_positions, key_positions):
    """Entries `x[..., t, s]` at query rows `t` and gathered key columns `s`.

    Args:
        x: `(B', H', Tx, Sx)` mask or bias; `Tx` or `Sx` may be 1
            (broadcast). Positions are clipped into range (the caller masks
            out-of-range ones).
        query_positions: int `(N, b)` query positions.
        key_positions: int `(P, N, L)` key positions.

    Returns:
        `(B', max(H', P), N, b, L)` tensor; when `H' > 1` and `P > 1` both
        count the same heads.
    """
    b_x, h_x, t_x, s_x = (ops.shape(x)[i] for i in range(4))
    static_t, static_s = x.shape[2], x.shape[3]
    patterns = key_positions.shape[0]
    rows = (
        ops.zeros_like(query_positions)
        if static_t == 1
        else ops.clip(query_positions, 0, t_x - 1)
    )  # (N, b)
    cols = (
        ops.zeros_like(key_positions)
        if static_s == 1
        else ops.clip(key_positions, 0, s_x - 1)
    )  # (P, N, L)
    flat = rows[None, :, :, None] * s_x + cols[:, :, None, :]  # (P, N, b, L)
    if x.shape[1] != 1 and patterns != 1:
        heads = ops.arange(patterns, dtype=flat.dtype)[:, None, None, None]
        flat = flat + heads * (t_x * s_x)  # (H, N, b, L)
        return ops.take(ops.reshape(x, (b_x, -1)), flat, axis=1)  # (B',H,N,b,L)
    gathered = ops.take(ops.reshape(x, (b_x, h_x, -1)), flat, axis=2)
    # (B', H', P, N, b, L) with H' == 1 or P == 1.
    heads = patterns if x.shape[1] == 1 else h_x
    shape = ops.shape(gathered)
    return ops.reshape(
        gathered, (shape[0], heads, shape[3], shape[4], shape[5])
    )  # (B', max(H', P), N, b, L)


def leading_rows_attention(
    query,
    key,
    value,
    rows,
    causal=False,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    bias=None,
    scale=None,
    dropout=0.0,
    seed=None,
    training=False,
    return_weights=False,
):
    """Dense attention of the first `rows` queries over every key.

    The global rows of the sparse kernels (BigBird's global query blocks,
    `LocalAttention`'s global tokens): `O(rows * S)`.

    Args:
        query: `(B, T, H, D)` queries; rows `0 .. rows - 1` attend.
        key: `(B, S, K, D)`.
        value: `(B, S, K, Dv)`.
        rows: static int, `1 <= rows <= T`.
        causal: whether query `t` only attends keys `s <= t`.
        query_mask: optional boolean `(B, T)`.
        key_mask: optional boolean `(B, S)`.
        attention_mask: optional boolean `(B', H', T, S)`.
        bias: optional float `(B', H', T or 1, S or 1)`.
        scale, dropout, seed, training: as in `block_sparse_attention`.
        return_weights: also return the `(B, H, rows, S)` weights.

    Returns:
        `(B, rows, H, Dv)` contexts, and the weights when
        `return_weights=True`.
    """
    key_len = ops.shape(key)[1]
    masks = [causal_mask(rows, key_len)] if causal else []
    if query_mask is not None:
        masks.append(ops.cast(query_mask, "bool")[:, None, :rows, None])  # (B,1,r,1)
    if key_mask is not None:
        masks.append(ops.cast(key_mask, "bool")[:, None, None, :])  # (B, 1, 1, S)
    if attention_mask is not None:
        masks.append(ops.cast(attention_mask, "bool")[:, :, :rows])  # (B',H',r,S)
    if bias is not None and bias.shape[2] != 1:
        bias = bias[:, :, :rows]  # (B', H', r, S or 1)
    return scaled_dot_product_attention(
        query[:, :rows],
        key,
        value,
        mask=merge_masks(*masks),
        bias=bias,
        scale=scale,
        dropout=dropout,
        seed=seed,
        training=training,
        return_weights=return_weights,
    )


def block_sparse_attention(
    query,
    key,
    value,
    query_positions,
    key_positions,
    slot_mask=None,
    window_size=None,
    unwindowed_slots=None,
    causal=False,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    bias=None,
    scale=None,
    dropout=0.0,
    seed=None,
    training=False,
    return_weights=False,
):
    """Attention of query blocks over gathered key positions.

    Query block `n` (rows `query_positions[n]`) attends the keys at
    `key_positions[p, n]` for pattern head `p`. The result equals exact
    softmax attention with a mask that is `True` exactly at the gathered
    (valid) pairs, provided no valid key position repeats within a row.

    Args:
        query: `(B, N * b, H, D)` queries, already blocked in order.
        key: `(B, S, K, D)`.
        value: `(B, S, K, Dv)`.
        query_positions: int `(N, b)` positions of the query rows in the
            un-blocked `(T, S)` coordinates (for masks, biases, causality).
        key_positions: int `(P, N, L)` key positions; `P` is 1 (shared by
            all heads) or H (one pattern per query head). Positions outside
            `[0, S)` are masked.
        slot_mask: optional boolean `(P or 1, N, L)`, `False` for slots to
            ignore (duplicates, padding of the pattern).
        window_size: optional int; also require `|t - s| <= window_size`
            (`0 <= t - s <= window_size` when causal).
        unwindowed_slots: optional boolean `(P or 1, N, L)`, `True` for
            slots `window_size` does not restrict (global keys).
        causal: whether query `t` only attends keys `s <= t`.
        query_mask: optional boolean `(B, T)`.
        key_mask: optional boolean `(B, S)`.
        attention_mask: optional boolean `(B', H', T, S)`, `H'` 1 or H.
        bias: optional float `(B', H', T or 1, S or 1)`.
        scale: logit scale; defaults to `1 / sqrt(D)`.
        dropout: dropout rate on the attention weights.
        seed: SeedGenerator or int of the dropout.
        training: whether dropout is active.
        return_weights: also return the weights scattered to a dense
            `(B, H, N * b, S)` float32 tensor.

    Returns:
        `(B, N * b, H, Dv)` output in the query's dtype, and the dense
        weights when `return_weights=True`.
    """
    num_heads, kv_heads = query.shape[2], key.shape[2]
    patterns = key_positions.shape[0]
    pattern_heads = kv_heads if patterns == 1 else num_heads
    groups = num_heads // pattern_heads
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    batch = ops.shape(query)[0]
    key_len = ops.shape(key)[1]
    num_blocks, block = query_positions.shape
    num_blocks = ops.shape(query_positions)[0] if num_blocks is None else num_blocks
    length = ops.shape(key_positions)[2]
    key_positions = ops.cast(key_positions, "int32")
    query_positions = ops.cast(query_positions, "int32")
    clipped = ops.clip(key_positions, 0, key_len - 1)  # (P, N, L)

    # Gather keys/values per pattern head: (B, P', N, L, D).
    if patterns == 1:
        head_of_pattern = ops.arange(kv_heads, dtype="int32")  # (K,)
        positions = clipped  # (1, N, L)
    else:
        head_of_pattern = ops.arange(num_heads, dtype="int32") // (
            num_heads // kv_heads
        )  # (H,)
        positions = clipped  # (H, N, L)
    flat = head_of_pattern[:, None, None] * key_len + positions  # (P', N, L)

    def gather(x):
        dim = x.shape[-1]
        x = ops.reshape(
            ops.transpose(x, (0, 2, 1, 3)), (batch, -1, dim)
        )  # (B, K * S, D)
        return ops.take(x, flat, axis=1)  # (B, P', N, L, D)

    k_sel, v_sel = gather(key), gather(value)
    q = ops.reshape(
        query, (batch, num_blocks, block, pattern_heads, groups, query.shape[-1])
    )  # (B, N, b, P', G', D)
    q = ops.transpose(q, (0, 3, 4, 1, 2, 5))  # (B, P', G', N, b, D)
    q = q * ops.cast(scale, q.dtype)
    logits = ops.einsum("bpgnqd,bpnld->bpgnql", q, k_sel)  # (B, P', G', N, b, L)
    logits = ops.reshape(
        logits, (batch, num_heads, num_blocks, block, length)
    )  # (B, H, N, b, L)

    # Masks broadcast to (B, H, N, b, L); their head axis is 1 or H (P == H).
    valid = ops.logical_and(
        ops.greater_equal(key_positions, 0), ops.less(key_positions, key_len)
    )  # (P, N, L)
    if slot_mask is not None:
        valid = ops.logical_and(valid, ops.cast(slot_mask, "bool"))
    pair = valid[:, :, None, :]  # (P, N, 1, L)
    offset = query_positions[None, :, :, None] - key_positions[:, :, None, :]
    # offset: (P, N, b, L) = t - s
    if causal:
        pair = ops.logical_and(pair, ops.greater_equal(offset, 0))
    if window_size is not None:
        lower = 0 if causal else -window_size
        in_window = ops.logical_and(
            ops.greater_equal(offset, lower), ops.less_equal(offset, window_size)
        )  # (P, N, b, L)
        if unwindowed_slots is not None:
            in_window = ops.logical_or(
                in_window, ops.cast(unwindowed_slots, "bool")[:, :, None, :]
            )
        pair = ops.logical_and(pair, in_window)  # (P, N, b, L)
    mask = pair[None]  # (1, P, N, b, L)
    if key_mask is not None:
        km = ops.take(ops.cast(key_mask, "bool"), clipped, axis=1)  # (B, P, N, L)
        mask = ops.logical_and(mask, km[:, :, :, None, :])  # (B, P, N, b, L)
    if query_mask is not None:
        q_len = ops.shape(query_mask)[1]
        qm = ops.take(
            ops.cast(query_mask, "bool"),
            ops.clip(query_positions, 0, q_len - 1),
            axis=1,
        )  # (B, N, b)
        in_range = ops.less(query_positions, q_len)  # (N, b)
        qm = ops.logical_and(qm, in_range[None])
        mask = ops.logical_and(mask, qm[:, None, :, :, None])  # (B, P, N, b, L)
    if attention_mask is not None:
        am = gather_pairs(
            ops.cast(attention_mask, "bool"), query_positions, key_positions
        )  # (B', 1 or H, N, b, L)
        mask = ops.logical_and(mask, am)
    if bias is not None:
        bias = gather_pairs(bias, query_positions, key_positions)  # (B',1|H,N,b,L)

    weights = masked_softmax(logits, mask, bias)  # (B, H, N, b, L) float32
    attended = ops.cast(weights, query.dtype)
    if training and dropout > 0:
        attended = keras.random.dropout(attended, dropout, seed=seed)
    attended = ops.reshape(
        attended, (batch, pattern_heads, groups, num_blocks, block, length)
    )  # (B, P', G', N, b, L)
    out = ops.einsum(
        "bpgnql,bpnle->bnqpge", ops.cast(attended, value.dtype), v_sel
    )  # (B, N, b, P', G', Dv)
    out = ops.reshape(
        out, (batch, num_blocks * block, num_heads, value.shape[-1])
    )  # (B, N * b, H, Dv)
    if not return_weights:
        return out
    return out, _dense_weights(weights, clipped, batch, key_len)


def _dense_weights(weights, positions, batch, key_len):
    """Scatter-add blocked weights `(B, H, N, b, L)` to `(B, H, N * b, S)`."""
    shape = ops.shape(weights)
    num_heads = weights.shape[1]
    num_blocks, block, length = shape[2], shape[3], shape[4]
    if positions.shape[0] == 1:
        positions = ops.broadcast_to(positions, (num_heads, num_blocks, length))
    target = (batch, num_heads, num_blocks, block, length)
    b_idx = ops.broadcast_to(
        ops.reshape(ops.arange(batch, dtype="int32"), (-1, 1, 1, 1, 1)), target
    )
    h_idx = ops.broadcast_to(
        ops.reshape(ops.arange(num_heads, dtype="int32"), (1, -1, 1, 1, 1)), target
    )
    rows = ops.reshape(
        ops.arange(num_blocks * block, dtype="int32"), (num_blocks, block)
    )  # (N, b)
    r_idx = ops.broadcast_to(rows[None, None, :, :, None], target)
    c_idx = ops.broadcast_to(positions[None, :, :, None, :], target)
    indices = ops.reshape(
        ops.stack([b_idx, h_idx, r_idx, c_idx], axis=-1), (-1, 4)
    )  # (B * H * N * b * L, 4)
    return ops.scatter(
        indices,
        ops.reshape(weights, (-1,)),
        (batch, num_heads, num_blocks * block, key_len),
    )  # (B, H, N * b, S)
