"""Neural Turing Machine addressing maths (Graves et al., 2014, section 3).

Each equation of the NTM's reading, writing and addressing is one small
function written in `keras.ops`, so it runs on every Keras backend and inside
XLA (no Python control flow on tensor values). Content-based addressing is
shared with the Differentiable Neural Computer.

Shape letters: B batch, N memory slots, W memory width (word size), H heads
(R when only read heads are meant), S = 2 * shift_range + 1 shift offsets.

All functions compute in float32 (inputs are cast): products and
normalisations of weightings lose too much precision in float16/bfloat16.
"""

import keras
from keras import ops


def _f32(x):
    return ops.cast(x, "float32")


def product(x, axis):
    """Product of `x` along `axis`: `ops.prod`, on JAX by halving.

    JAX cannot differentiate `ops.prod` when the batch size is symbolic (in
    jax 0.10.2 the JVP of its reduction turns the shape into a NumPy
    array), and `model.export` on JAX traces the gradient with a symbolic
    batch size. There the product is `halving_product`, with the same
    values and the same exact gradient; with it the NTM and DNC layers
    export on JAX. Other backends keep the single reduction.

    Args:
        x: float tensor; on JAX `axis` must have a static length.
        axis: int, the axis to multiply over (negative counts from the end).

    Returns:
        `x` without `axis`, its entries the products over it.
    """
    if keras.backend.backend() == "jax":
        return halving_product(x, axis)
    return ops.prod(x, axis=axis)


def halving_product(x, axis):
    """Product of `x` along `axis`, a static-length axis, by halving.

    Equal to `ops.prod(x, axis=axis)`, with the same exact gradient (zeros
    included), from slices and elementwise products only: each of
    ceil(log2(n)) steps multiplies the first half of the axis by the second.

    Args:
        x: tensor whose `axis` has a static length `n >= 1`.
        axis: int, the axis to multiply over (negative counts from the end).

    Returns:
        `x` without `axis`, its entries the products over it.

    Raises:
        ValueError: if `axis` has no static length.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers.memory.addressing import halving_product
    halving_product(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), axis=1)  # [6, 120]
    ```
    """
    axis = axis % len(x.shape)
    n = x.shape[axis]
    if not isinstance(n, int) or n < 1:
        raise ValueError(
            "Received an invalid value for argument `x`, expected a static "
            f"length >= 1 along axis {axis}. Received: shape={tuple(x.shape)}"
        )
    lead = (slice(None),) * axis
    while n > 1:
        half = n // 2
        paired = x[lead + (slice(0, half),)] * x[lead + (slice(half, 2 * half),)]
        if n % 2:  # the odd last entry joins the next step as it is
            paired = ops.concatenate([paired, x[lead + (slice(2 * half, n),)]], axis)
        x, n = paired, half + n % 2
    return ops.squeeze(x, axis)


def guarded_norm(x, epsilon=1e-6):
    """Euclidean norm along the last axis with an epsilon floor.

    `||x||_eps = sqrt(max(sum_i x_i^2, eps^2))`

    Equal to the true norm whenever `||x|| >= eps`; never zero, and its
    gradient is finite (zero) at `x = 0`, where `sqrt` alone gives NaN.

    Args:
        x: float tensor `(..., W)`.
        epsilon: small positive float, the smallest norm returned.

    Returns:
        float32 tensor `(...)`, every entry `>= epsilon`.
    """
    squared = ops.sum(ops.square(_f32(x)), axis=-1)
    return ops.sqrt(ops.maximum(squared, epsilon * epsilon))


def cosine_similarity(memory, keys, epsilon=1e-6):
    """Cosine similarity between every key and every memory row (eq. 6).

    `K[b, h, i] = (k_h . M_i) / (||k_h||_eps * ||M_i||_eps)`

    with the epsilon-guarded norms of `guarded_norm`, so an all-zero key or
    memory row gives a similarity of 0 instead of NaN.

    Args:
        memory: float tensor `(B, N, W)`.
        keys: float tensor `(B, H, W)`.
        epsilon: small positive float guarding both norms.

    Returns:
        float32 tensor `(B, H, N)` in `[-1, 1]`.
    """
    memory = _f32(memory)
    keys = _f32(keys)
    dot = ops.einsum("bhw,bnw->bhn", keys, memory)  # (B, H, N)
    key_norm = guarded_norm(keys, epsilon)  # (B, H)
    memory_norm = guarded_norm(memory, epsilon)  # (B, N)
    return dot / (key_norm[:, :, None] * memory_norm[:, None, :])  # (B, H, N)


def content_weighting(memory, keys, strengths, epsilon=1e-6):
    """Content-based addressing (eq. 5).

    `w^c[b, h, i] = softmax_i(beta[b, h] * K(k[b, h], M[b, i]))`

    with `K` the epsilon-guarded cosine similarity. `strengths` (beta) must
    already be positive: callers apply `softplus` (NTM, see `key_strength`)
    or `1 + softplus` (DNC) to the raw controller output.

    Args:
        memory: float tensor `(B, N, W)`.
        keys: float tensor `(B, H, W)`.
        strengths: positive float tensor `(B, H)`.
        epsilon: small positive float guarding the norms.

    Returns:
        float32 tensor `(B, H, N)`; every row is a distribution over `N`.
    """
    similarity = cosine_similarity(memory, keys, epsilon)  # (B, H, N)
    logits = _f32(strengths)[:, :, None] * similarity  # (B, H, N)
    return ops.softmax(logits, axis=-1)


def key_strength(x):
    """Key strength of the NTM: `beta = softplus(x) = log(1 + e^x) > 0`.

    Args:
        x: float tensor, the raw controller output.

    Returns:
        float32 tensor of the same shape, every entry `> 0`.
    """
    return ops.softplus(_f32(x))


def sharpening_exponent(x):
    """Sharpening exponent of the NTM: `gamma = 1 + softplus(x) >= 1`.

    Args:
        x: float tensor, the raw controller output.

    Returns:
        float32 tensor of the same shape, every entry `>= 1`.
    """
    return 1.0 + ops.softplus(_f32(x))


def interpolate(content, previous, gate):
    """Interpolation gate (eq. 7).

    `w^g = g * w^c + (1 - g) * w_{t-1}`

    Args:
        content: float tensor `(B, H, N)`, the content weighting.
        previous: float tensor `(B, H, N)`, the previous weighting.
        gate: float tensor `(B, H)` in `[0, 1]`.

    Returns:
        float32 tensor `(B, H, N)`; a distribution when both inputs are.
    """
    gate = _f32(gate)[:, :, None]  # (B, H, 1)
    return gate * _f32(content) + (1.0 - gate) * _f32(previous)


def circular_shift(weighting, shift):
    """Circular convolution with the shift weighting (eq. 8).

    `w~[i] = sum_j w[j] * s[(i - j) mod N]`

    `shift` holds one weight per offset `-shift_range, ..., +shift_range`
    (index `m` is offset `m - shift_range`); offset `+1` moves the focus from
    slot `j` to slot `j + 1`, wrapping from the last slot to the first.

    Args:
        weighting: float tensor `(B, H, N)`.
        shift: float tensor `(B, H, S)`, `S = 2 * shift_range + 1` odd and
            at most `N`, usually a softmax over the offsets.

    Returns:
        float32 tensor `(B, H, N)`; a distribution when both inputs are.
    """
    weighting = _f32(weighting)
    shift = _f32(shift)
    num_offsets = shift.shape[-1]
    shift_range = (num_offsets - 1) // 2
    result = 0.0
    for m in range(num_offsets):
        rolled = ops.roll(weighting, m - shift_range, axis=-1)  # (B, H, N)
        result = result + shift[:, :, m : m + 1] * rolled
    return result


def sharpen(weighting, gamma, epsilon=1e-6):
    """Sharpening (eq. 9).

    `w[i] = w~[i]^gamma / sum_j w~[j]^gamma`

    computed as `softmax_i(gamma * log(w~[i] + eps))`, which never divides by
    an underflowed sum (`(1/128)^20` is below float32's range) and has finite
    gradients at `w~[i] = 0`.

    Args:
        weighting: non-negative float tensor `(B, H, N)`.
        gamma: float tensor `(B, H)`, `>= 1` (see `sharpening_exponent`).
        epsilon: small positive float added before the logarithm.

    Returns:
        float32 tensor `(B, H, N)`; every row is a distribution over `N`.
    """
    logits = _f32(gamma)[:, :, None] * ops.log(_f32(weighting) + epsilon)
    return ops.softmax(logits, axis=-1)  # (B, H, N)


def address(memory, previous, keys, strengths, gates, shifts, gammas, epsilon=1e-6):
    """The full NTM addressing pipeline (figure 2).

    `w_t = sharpen(circular_shift(interpolate(content_weighting(M, k, beta),
    w_{t-1}, g), s), gamma)`

    Args:
        memory: float tensor `(B, N, W)`.
        previous: float tensor `(B, H, N)`, the heads' previous weightings.
        keys: float tensor `(B, H, W)`.
        strengths: positive float tensor `(B, H)`.
        gates: float tensor `(B, H)` in `[0, 1]`.
        shifts: float tensor `(B, H, S)`, distributions over the offsets.
        gammas: float tensor `(B, H)`, `>= 1`.
        epsilon: small positive float guarding norms and the logarithm.

    Returns:
        float32 tensor `(B, H, N)`; every row is a distribution over `N`.
    """
    content = content_weighting(memory, keys, strengths, epsilon)
    gated = interpolate(content, previous, gates)
    shifted = circular_shift(gated, shifts)
    return sharpen(shifted, gammas, epsilon)


def read_memory(memory, weightings):
    """Reading (eq. 2).

    `r[b, h] = sum_i w[b, h, i] * M[b, i]`

    Args:
        memory: float tensor `(B, N, W)`.
        weightings: float tensor `(B, R, N)`.

    Returns:
        float32 tensor `(B, R, W)`.
    """
    return ops.einsum("brn,bnw->brw", _f32(weightings), _f32(memory))  # (B, R, W)


def write_memory(memory, weightings, erase, add):
    """Writing: erase then add (eq. 3-4), for one or more write heads.

    `M_t[i] = M_{t-1}[i] * prod_h (1 - w_h[i] e_h) + sum_h w_h[i] a_h`

    The erase products commute, so the order of the write heads does not
    matter.

    Args:
        memory: float tensor `(B, N, W)`.
        weightings: float tensor `(B, H, N)`, the write weightings.
        erase: float tensor `(B, H, W)` in `[0, 1]`.
        add: float tensor `(B, H, W)`.

    Returns:
        float32 tensor `(B, N, W)`.
    """
    weightings = _f32(weightings)
    erased = ops.einsum("bhn,bhw->bhnw", weightings, _f32(erase))  # (B, H, N, W)
    keep = product(1.0 - erased, axis=1)  # (B, N, W)
    added = ops.einsum("bhn,bhw->bnw", weightings, _f32(add))  # (B, N, W)
    return _f32(memory) * keep + added
