"""Differentiable Neural Computer memory maths (Graves et al., 2016, Methods).

Each equation of the DNC's dynamic memory allocation, temporal memory
linkage and read-mode mixing is one small function written in `keras.ops`,
so it runs on every Keras backend and inside XLA (no Python control flow on
tensor values). Content-based addressing is shared with the Neural Turing
Machine: see `keras_attention.layers.memory.addressing.content_weighting`.

Shape letters: B batch, N memory slots, W memory width (word size), R read
heads, K write heads. The paper has one write head; with `K > 1` every write
head keeps its own precedence weighting and link matrix (as in DeepMind's
reference implementation), and the read modes of a read head are
`[backward_1, ..., backward_K, content, forward_1, ..., forward_K]`, which is
the paper's `(backward, content, forward)` order when `K = 1`.

All functions compute in float32 (inputs are cast): usage, allocation
products and link matrices lose too much precision in float16/bfloat16.
"""

import numpy as np
from keras import ops

from keras_attention.layers.memory.addressing import product


def _f32(x):
    return ops.cast(x, "float32")


def oneplus(x):
    """The DNC's strength activation.

    `oneplus(x) = 1 + log(1 + e^x)`, so strengths lie in `[1, inf)`.

    Args:
        x: float tensor of any shape.

    Returns:
        float32 tensor of the same shape, every entry `>= 1`.
    """
    return 1.0 + ops.softplus(_f32(x))


def retention_vector(free_gates, read_weightings):
    """Memory retention vector: how much of each slot the free gates keep.

    `psi_t = prod_{i=1..R} (1 - f_t^i w_{t-1}^{r,i})`

    Args:
        free_gates: float tensor `(B, R)` in `[0, 1]`, one gate per read head.
        read_weightings: float tensor `(B, R, N)`, the previous read
            weightings.

    Returns:
        float32 tensor `(B, N)` in `[0, 1]`.
    """
    freed = _f32(free_gates)[:, :, None] * _f32(read_weightings)  # (B, R, N)
    return product(1.0 - freed, axis=1)  # (B, N)


def combined_write_weighting(write_weightings):
    """Fraction of each slot written by at least one of the write heads.

    `w_t[i] = 1 - prod_{k=1..K} (1 - w_t^{w,k}[i])` (equals `w_t^w` for one
    write head).

    Args:
        write_weightings: float tensor `(B, K, N)`.

    Returns:
        float32 tensor `(B, N)` in `[0, 1]`.
    """
    return 1.0 - product(1.0 - _f32(write_weightings), axis=1)  # (B, N)


def usage_update(usage, write_weightings, free_gates, read_weightings):
    """Memory usage after the last write and the free gates.

    `u_t = (u_{t-1} + w_{t-1}^w - u_{t-1} o w_{t-1}^w) o psi_t`

    with `w_{t-1}^w` the previous write weighting (combined over the write
    heads by `combined_write_weighting`) and `psi_t` the retention vector.

    Args:
        usage: float tensor `(B, N)` in `[0, 1]`, the previous usage.
        write_weightings: float tensor `(B, K, N)`, the previous write
            weightings.
        free_gates: float tensor `(B, R)` in `[0, 1]`.
        read_weightings: float tensor `(B, R, N)`, the previous read
            weightings.

    Returns:
        float32 tensor `(B, N)` in `[0, 1]`.
    """
    usage = _f32(usage)
    written = combined_write_weighting(write_weightings)  # (B, N)
    psi = retention_vector(free_gates, read_weightings)  # (B, N)
    return (usage + written - usage * written) * psi


def exclusive_cumprod(x):
    """Exclusive cumulative product along the last axis.

    `y[..., j] = prod_{i<j} x[..., i]` (so `y[..., 0] = 1`).

    Computed as a product over a strictly lower-triangular selection, whose
    gradient is exact also where `x` has zeros (a division-based cumprod
    gradient is not).

    Args:
        x: float tensor `(B, N)`.

    Returns:
        float32 tensor `(B, N)`.
    """
    x = _f32(x)
    n = x.shape[-1]
    before = np.tril(np.ones((n, n), dtype=bool), k=-1)  # (N, N) [j, i]
    factors = ops.where(before[None], x[:, None, :], 1.0)  # (B, N, N)
    return product(factors, axis=-1)  # (B, N)


def allocation_weighting(usage):
    """Sort-based allocation weighting.

    With `phi_t` the slot indices sorted by ascending usage (`phi_t[1]` the
    least used slot):

    `a_t[phi_t[j]] = (1 - u_t[phi_t[j]]) prod_{i=1..j-1} u_t[phi_t[i]]`

    Ties are broken by slot index (the lower index counts as less used). As
    in the paper, gradients flow through the usage values but not through
    the sort order.

    Args:
        usage: float tensor `(B, N)` in `[0, 1]`.

    Returns:
        float32 tensor `(B, N)` in `[0, 1]` with sum `1 - prod_i u_t[i]`.
    """
    usage = _f32(usage)
    n = usage.shape[-1]
    order = ops.argsort(usage, axis=-1)  # (B, N) phi_t, ascending usage
    to_slot = ops.one_hot(order, n, dtype="float32")  # (B, N, N) [j, slot]
    # Gather and scatter through the one-hot permutation, not
    # `take_along_axis`: on TensorFlow that broadcasts to a run-time shape,
    # whose gradient XLA cannot compile inside the RNN loop when the batch
    # size is not fixed (a partial last batch in a `jit_compile=True` fit).
    sorted_usage = ops.einsum("bjn,bn->bj", to_slot, usage)  # (B, N)
    sorted_allocation = (1.0 - sorted_usage) * exclusive_cumprod(sorted_usage)
    # Scatter back to slot order: a[phi[j]] = sorted_allocation[j].
    return ops.einsum("bj,bjn->bn", sorted_allocation, to_slot)  # (B, N)


def write_allocation_weightings(usage, allocation_write_gates):
    """Allocation weightings for several write heads, allocated in turn.

    Head `k` allocates with the usage left by heads `1..k-1`, updated as if
    they had written with their gated allocation:

    `a^k = allocation_weighting(u^k)`,
    `u^{k+1} = u^k + (1 - u^k) o (g^{a,k} g^{w,k} a^k)`, `u^1 = u_t`.

    With one write head this is `allocation_weighting(u_t)`.

    Args:
        usage: float tensor `(B, N)` in `[0, 1]`, the current usage `u_t`.
        allocation_write_gates: float tensor `(B, K)` in `[0, 1]`, the
            product `g^{a,k} g^{w,k}` of each head's allocation and write
            gates.

    Returns:
        float32 tensor `(B, K, N)`.
    """
    usage = _f32(usage)
    gates = _f32(allocation_write_gates)
    allocations = []
    for k in range(gates.shape[-1]):  # static number of write heads
        allocation = allocation_weighting(usage)  # (B, N)
        allocations.append(allocation)
        usage = usage + (1.0 - usage) * gates[:, k : k + 1] * allocation
    return ops.stack(allocations, axis=1)  # (B, K, N)


def write_weighting(allocation, content, allocation_gate, write_gate):
    """Write weighting: gated mix of allocation and content addressing.

    `w_t^w = g_t^w [g_t^a a_t + (1 - g_t^a) c_t^w]`

    Args:
        allocation: float tensor `(B, K, N)`, allocation weightings `a_t`.
        content: float tensor `(B, K, N)`, write content weightings `c_t^w`.
        allocation_gate: float tensor `(B, K)` in `[0, 1]`.
        write_gate: float tensor `(B, K)` in `[0, 1]`.

    Returns:
        float32 tensor `(B, K, N)`, each row summing to at most 1.
    """
    g_a = _f32(allocation_gate)[:, :, None]  # (B, K, 1)
    g_w = _f32(write_gate)[:, :, None]  # (B, K, 1)
    return g_w * (g_a * _f32(allocation) + (1.0 - g_a) * _f32(content))


def memory_update(memory, write_weightings, erase_vectors, write_vectors):
    """Erase then add: the memory write.

    `M_t = M_{t-1} o (E - w_t^w e_t^T) + w_t^w v_t^T`

    With `K` write heads the erase factors multiply and the additions sum:
    `M_t = M_{t-1} o prod_k (E - w^{w,k} e_k^T) + sum_k w^{w,k} v_k^T`.

    Args:
        memory: float tensor `(B, N, W)`.
        write_weightings: float tensor `(B, K, N)`.
        erase_vectors: float tensor `(B, K, W)` in `[0, 1]`.
        write_vectors: float tensor `(B, K, W)`.

    Returns:
        float32 tensor `(B, N, W)`.
    """
    weights = _f32(write_weightings)
    erase = ops.einsum("bkn,bkw->bknw", weights, _f32(erase_vectors))
    keep = product(1.0 - erase, axis=1)  # (B, N, W)
    add = ops.einsum("bkn,bkw->bnw", weights, _f32(write_vectors))  # (B, N, W)
    return _f32(memory) * keep + add


def precedence_update(precedence, write_weightings):
    """Precedence weighting: how much each slot was the last one written.

    `p_t = (1 - sum_i w_t^w[i]) p_{t-1} + w_t^w`, `p_0 = 0`.

    Args:
        precedence: float tensor `(B, K, N)`, one per write head.
        write_weightings: float tensor `(B, K, N)`.

    Returns:
        float32 tensor `(B, K, N)`, each row summing to at most 1.
    """
    weights = _f32(write_weightings)
    total = ops.sum(weights, axis=-1, keepdims=True)  # (B, K, 1)
    return (1.0 - total) * _f32(precedence) + weights


def link_update(link, precedence, write_weightings):
    """Temporal link matrix: `L[i, j]` is how much slot `i` was written
    right after slot `j`.

    `L_t[i, j] = (1 - w_t^w[i] - w_t^w[j]) L_{t-1}[i, j] + w_t^w[i] p_{t-1}[j]`,
    `L_t[i, i] = 0`, `L_0 = 0`.

    Args:
        link: float tensor `(B, K, N, N)`, the previous link matrices.
        precedence: float tensor `(B, K, N)`, the PREVIOUS precedence
            `p_{t-1}`.
        write_weightings: float tensor `(B, K, N)`, the current `w_t^w`.

    Returns:
        float32 tensor `(B, K, N, N)` in `[0, 1]` with zero diagonal and row
        and column sums at most 1.
    """
    weights = _f32(write_weightings)
    w_i = weights[:, :, :, None]  # (B, K, N, 1)
    w_j = weights[:, :, None, :]  # (B, K, 1, N)
    p_j = _f32(precedence)[:, :, None, :]  # (B, K, 1, N)
    new_link = (1.0 - w_i - w_j) * _f32(link) + w_i * p_j  # (B, K, N, N)
    n = weights.shape[-1]
    off_diagonal = 1.0 - ops.eye(n, dtype="float32")  # (N, N)
    return new_link * off_diagonal


def forward_weighting(link, read_weightings):
    """Forward weighting: one step forward in writing order.

    `f_t^i = L_t w_{t-1}^{r,i}`

    Args:
        link: float tensor `(B, K, N, N)`.
        read_weightings: float tensor `(B, R, N)`, the previous read
            weightings.

    Returns:
        float32 tensor `(B, R, K, N)`, one per read head and write head.
    """
    # f[b, r, k, i] = sum_j L[b, k, i, j] w[b, r, j]
    return ops.einsum("bkij,brj->brki", _f32(link), _f32(read_weightings))


def backward_weighting(link, read_weightings):
    """Backward weighting: one step backward in writing order.

    `b_t^i = L_t^T w_{t-1}^{r,i}`

    Args:
        link: float tensor `(B, K, N, N)`.
        read_weightings: float tensor `(B, R, N)`, the previous read
            weightings.

    Returns:
        float32 tensor `(B, R, K, N)`, one per read head and write head.
    """
    # b[b, r, k, i] = sum_j L[b, k, j, i] w[b, r, j]
    return ops.einsum("bkji,brj->brki", _f32(link), _f32(read_weightings))


def read_weighting(read_modes, backward, content, forward):
    """Read weighting: the read modes mix backward, content and forward.

    `w_t^{r,i} = pi_t^i[1] b_t^i + pi_t^i[2] c_t^{r,i} + pi_t^i[3] f_t^i`

    With `K` write heads the modes are
    `[backward_1..backward_K, content, forward_1..forward_K]`.

    Args:
        read_modes: float tensor `(B, R, 2K + 1)`, each row a distribution.
        backward: float tensor `(B, R, K, N)` from `backward_weighting`.
        content: float tensor `(B, R, N)`, read content weightings.
        forward: float tensor `(B, R, K, N)` from `forward_weighting`.

    Returns:
        float32 tensor `(B, R, N)`, each row summing to at most 1.
    """
    modes = _f32(read_modes)
    k = backward.shape[2]
    pi_b = modes[:, :, :k]  # (B, R, K)
    pi_c = modes[:, :, k : k + 1]  # (B, R, 1)
    pi_f = modes[:, :, k + 1 :]  # (B, R, K)
    from_backward = ops.einsum("brk,brkn->brn", pi_b, _f32(backward))
    from_forward = ops.einsum("brk,brkn->brn", pi_f, _f32(forward))
    return from_backward + pi_c * _f32(content) + from_forward  # (B, R, N)


def read_memory(memory, read_weightings):
    """Read vectors: weighted sums of memory rows.

    `r_t^i = M_t^T w_t^{r,i}`

    Args:
        memory: float tensor `(B, N, W)`.
        read_weightings: float tensor `(B, R, N)`.

    Returns:
        float32 tensor `(B, R, W)`.
    """
    return ops.einsum("brn,bnw->brw", _f32(read_weightings), _f32(memory))
