"""DNC memory maths against NumPy references written from the paper.

Graves et al. 2016, Methods. Dimensions all differ: B=3, N=7, W=5, R=2,
K=2 (two write heads).
"""

import numpy as np
import pytest
from backend_utils import gradients, to_numpy
from keras import ops

from keras_attention.layers.memory import dnc_addressing as dnc

B, N, W, R, K = 3, 7, 5, 2, 2
TOL = dict(rtol=1e-5, atol=1e-6)


def _rng():
    return np.random.default_rng(0)


def _distributions(rng, shape, total_max=1.0):
    """Random non-negative rows summing to at most `total_max`."""
    x = rng.random(shape)
    x = x / x.sum(-1, keepdims=True)
    return (x * rng.uniform(0.0, total_max, shape[:-1] + (1,))).astype("float32")


# ---------------------------------------------------------------------------
# NumPy references, one slot / batch element at a time, from the formulae.


def ref_allocation(u):
    """a[phi_j] = (1 - u[phi_j]) prod_{i<j} u[phi_i], phi ascending (stable)."""
    phi = np.argsort(u, kind="stable")
    a = np.zeros_like(u, dtype="float64")
    running = 1.0
    for j in range(len(u)):
        a[phi[j]] = (1.0 - u[phi[j]]) * running
        running *= u[phi[j]]
    return a


def ref_usage(u_prev, w_write_prev, free_gates, w_read_prev):
    """u_t = (u + w - u w) psi, psi = prod_i (1 - f_i w^r_i);
    several write heads combine as w = 1 - prod_k (1 - w_k)."""
    w = 1.0 - np.prod(1.0 - w_write_prev, axis=0)
    psi = np.ones_like(u_prev)
    for i in range(len(free_gates)):
        psi = psi * (1.0 - free_gates[i] * w_read_prev[i])
    return (u_prev + w - u_prev * w) * psi


def ref_link(link, p_prev, w):
    n = len(w)
    out = np.zeros_like(link)
    for i in range(n):
        for j in range(n):
            if i != j:
                out[i, j] = (1 - w[i] - w[j]) * link[i, j] + w[i] * p_prev[j]
    return out


# ---------------------------------------------------------------------------
# Allocation.

DESIGNED_USAGE = {
    "distinct": [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.6],
    "ties": [0.5, 0.2, 0.5, 0.2, 0.9, 0.0, 0.0],
    "all_used": [1.0] * N,
    "all_free": [0.0] * N,
    "one_free": [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0],
    "extremes": [1.0, 0.0, 0.25, 1.0, 0.0, 0.75, 0.5],
}


@pytest.mark.parametrize("name", sorted(DESIGNED_USAGE))
def test_allocation_equals_numpy_reference(name):
    u = np.asarray(DESIGNED_USAGE[name], "float32")
    batch = np.stack([u, u[::-1], np.roll(u, 3)])  # (3, 7)
    got = to_numpy(dnc.allocation_weighting(batch))
    for b in range(batch.shape[0]):
        np.testing.assert_allclose(got[b], ref_allocation(batch[b]), **TOL)
    # sum_i a[i] = 1 - prod_i u[i]
    np.testing.assert_allclose(got.sum(-1), 1 - batch.prod(-1), **TOL)


def test_allocation_designed_cases_by_hand():
    all_free = to_numpy(dnc.allocation_weighting(np.zeros((1, N), "float32")))[0]
    np.testing.assert_array_equal(all_free, np.eye(N)[0])  # first free slot
    all_used = to_numpy(dnc.allocation_weighting(np.ones((1, N), "float32")))[0]
    np.testing.assert_array_equal(all_used, np.zeros(N))
    one_free = np.ones((1, N), "float32")
    one_free[0, 4] = 0.0
    np.testing.assert_array_equal(
        to_numpy(dnc.allocation_weighting(one_free))[0], np.eye(N)[4]
    )
    # Ties: the lower slot index is allocated first.
    u = np.asarray([[0.5, 0.5, 1, 1, 1, 1, 1]], "float32")
    np.testing.assert_allclose(
        to_numpy(dnc.allocation_weighting(u))[0], [0.5, 0.25, 0, 0, 0, 0, 0], **TOL
    )


def test_allocation_random_usage():
    u = _rng().random((B, N)).astype("float32")
    got = to_numpy(dnc.allocation_weighting(u))
    for b in range(B):
        np.testing.assert_allclose(got[b], ref_allocation(u[b]), **TOL)
    assert np.all(got >= 0) and np.all(got <= 1)


def test_allocation_gradient_is_exact_through_zeros():
    """d a / d u from the product formula, also where usage has zeros."""
    u = np.asarray([0.0, 0.4, 0.0, 0.9, 0.2, 0.6, 0.3], "float32")
    cot = _rng().standard_normal(N).astype("float32")
    [grad] = gradients(lambda x: ops.sum(ops.multiply(dnc.allocation_weighting(x), cot)), [u[None]])
    grad = grad[0]
    # Reference Jacobian: a_j = (1 - u_j) prod_{l before j} u_l.
    phi = np.argsort(u, kind="stable")
    rank = np.argsort(phi)
    jac = np.zeros((N, N))
    for j in range(N):
        before = [l for l in range(N) if rank[l] < rank[j]]
        jac[j, j] = -np.prod(u[before])
        for i in before:
            others = [l for l in before if l != i]
            jac[j, i] = (1 - u[j]) * np.prod(u[others])
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, cot @ jac, rtol=1e-5, atol=1e-6)


def test_exclusive_cumprod():
    x = np.asarray([[2.0, 0.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]], "float32")
    np.testing.assert_allclose(
        to_numpy(dnc.exclusive_cumprod(x)),
        [[1, 2, 0, 0], [1, 0.5, 0.25, 0.125]],
        **TOL,
    )


def test_write_allocation_weightings_sequential():
    rng = _rng()
    u = rng.random((B, N)).astype("float32")
    gates = rng.random((B, K)).astype("float32")
    got = to_numpy(dnc.write_allocation_weightings(u, gates))  # (B, K, N)
    assert got.shape == (B, K, N)
    for b in range(B):
        usage = u[b].astype("float64")
        for k in range(K):
            a = ref_allocation(usage)
            np.testing.assert_allclose(got[b, k], a, **TOL)
            usage = usage + (1 - usage) * gates[b, k] * a
    # One head equals plain allocation.
    np.testing.assert_allclose(
        to_numpy(dnc.write_allocation_weightings(u, gates[:, :1]))[:, 0],
        to_numpy(dnc.allocation_weighting(u)),
        **TOL,
    )


def test_second_head_allocates_another_slot_when_fully_written():
    u = np.zeros((1, N), "float32")
    got = to_numpy(dnc.write_allocation_weightings(u, np.ones((1, K), "float32")))[0]
    np.testing.assert_allclose(got, np.eye(N)[:K], **TOL)


# ---------------------------------------------------------------------------
# Usage, write weighting, memory.


def test_usage_update_equals_reference_and_stays_in_unit_interval():
    rng = _rng()
    u = rng.random((B, N)).astype("float32")
    ww = _distributions(rng, (B, K, N))
    rw = _distributions(rng, (B, R, N))
    f = rng.random((B, R)).astype("float32")
    got = to_numpy(dnc.usage_update(u, ww, f, rw))
    for b in range(B):
        np.testing.assert_allclose(got[b], ref_usage(u[b], ww[b], f[b], rw[b]), **TOL)
    assert np.all(got >= 0) and np.all(got <= 1)
    # Free gates at 1 on a fully read slot free it.
    rw_one = np.zeros((1, R, N), "float32")
    rw_one[0, 0, 2] = 1.0
    freed = to_numpy(
        dnc.usage_update(
            np.ones((1, N), "float32"),
            np.zeros((1, K, N), "float32"),
            np.ones((1, R), "float32"),
            rw_one,
        )
    )[0]
    np.testing.assert_allclose(freed, 1 - np.eye(N)[2], **TOL)


def test_retention_vector():
    rng = _rng()
    f = rng.random((B, R)).astype("float32")
    rw = _distributions(rng, (B, R, N))
    want = np.prod(1 - f[:, :, None] * rw, axis=1)
    np.testing.assert_allclose(to_numpy(dnc.retention_vector(f, rw)), want, **TOL)


def test_write_weighting_formula():
    rng = _rng()
    a = _distributions(rng, (B, K, N))
    c = _distributions(rng, (B, K, N))
    ga = rng.random((B, K)).astype("float32")
    gw = rng.random((B, K)).astype("float32")
    got = to_numpy(dnc.write_weighting(a, c, ga, gw))
    want = gw[..., None] * (ga[..., None] * a + (1 - ga[..., None]) * c)
    np.testing.assert_allclose(got, want, **TOL)
    assert np.all(got.sum(-1) <= 1 + 1e-6)


def test_memory_update_erase_then_add():
    rng = _rng()
    m = rng.standard_normal((B, N, W)).astype("float32")
    ww = _distributions(rng, (B, K, N))
    e = rng.random((B, K, W)).astype("float32")
    v = rng.standard_normal((B, K, W)).astype("float32")
    got = to_numpy(dnc.memory_update(m, ww, e, v))
    for b in range(B):
        want = m[b].astype("float64")
        keep = np.ones((N, W))
        for k in range(K):
            keep *= 1 - np.outer(ww[b, k], e[b, k])
        want = want * keep + sum(np.outer(ww[b, k], v[b, k]) for k in range(K))
        np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)
    # One head, full erase at a one-hot slot: the slot becomes v exactly.
    w1 = np.eye(N, dtype="float32")[None, None, 3]
    one = to_numpy(
        dnc.memory_update(
            m[:1], w1, np.ones((1, 1, W), "float32"), v[:1, :1]
        )
    )[0]
    np.testing.assert_allclose(one[3], v[0, 0], **TOL)
    np.testing.assert_allclose(np.delete(one, 3, 0), np.delete(m[0], 3, 0), **TOL)


# ---------------------------------------------------------------------------
# Precedence, links, directional reads.


def test_precedence_and_link_equal_reference():
    rng = _rng()
    p = _distributions(rng, (B, K, N))
    link = np.zeros((B, K, N, N), "float32")
    for _ in range(3):  # a few steps so the link matrix is non-trivial
        w = _distributions(rng, (B, K, N))
        got_link = to_numpy(dnc.link_update(link, p, w))
        got_p = to_numpy(dnc.precedence_update(p, w))
        for b in range(B):
            for k in range(K):
                np.testing.assert_allclose(
                    got_link[b, k], ref_link(link[b, k], p[b, k], w[b, k]), **TOL
                )
                want_p = (1 - w[b, k].sum()) * p[b, k] + w[b, k]
                np.testing.assert_allclose(got_p[b, k], want_p, **TOL)
        link, p = got_link, got_p


def test_link_after_sequential_one_hot_writes():
    """Writing slots 4, 1, 6 in turn links 1 <- 4 and 6 <- 1."""
    link = np.zeros((1, 1, N, N), "float32")
    p = np.zeros((1, 1, N), "float32")
    for slot in (4, 1, 6):
        w = np.eye(N, dtype="float32")[None, None, slot]
        link = to_numpy(dnc.link_update(link, p, w))
        p = to_numpy(dnc.precedence_update(p, w))
    want = np.zeros((N, N))
    want[1, 4] = 1.0
    want[6, 1] = 1.0
    np.testing.assert_allclose(link[0, 0], want, **TOL)
    np.testing.assert_allclose(p[0, 0], np.eye(N)[6], **TOL)
    # Reading slot 1: forward goes to 6 (written after), backward to 4.
    r = np.eye(N, dtype="float32")[None, None, 1]
    np.testing.assert_allclose(
        to_numpy(dnc.forward_weighting(link, r))[0, 0, 0], np.eye(N)[6], **TOL
    )
    np.testing.assert_allclose(
        to_numpy(dnc.backward_weighting(link, r))[0, 0, 0], np.eye(N)[4], **TOL
    )


def test_forward_backward_equal_matrix_products():
    rng = _rng()
    link = rng.random((B, K, N, N)).astype("float32")
    rw = _distributions(rng, (B, R, N))
    fwd = to_numpy(dnc.forward_weighting(link, rw))
    bwd = to_numpy(dnc.backward_weighting(link, rw))
    assert fwd.shape == bwd.shape == (B, R, K, N)
    for b in range(B):
        for r in range(R):
            for k in range(K):
                np.testing.assert_allclose(fwd[b, r, k], link[b, k] @ rw[b, r], **TOL)
                np.testing.assert_allclose(
                    bwd[b, r, k], link[b, k].T @ rw[b, r], **TOL
                )


def test_read_weighting_mixes_modes_in_order():
    rng = _rng()
    modes = _distributions(rng, (B, R, 2 * K + 1), total_max=1.0)
    modes = modes / modes.sum(-1, keepdims=True)
    bwd = _distributions(rng, (B, R, K, N))
    fwd = _distributions(rng, (B, R, K, N))
    content = _distributions(rng, (B, R, N))
    got = to_numpy(dnc.read_weighting(modes, bwd, content, fwd))
    want = (
        np.einsum("brk,brkn->brn", modes[..., :K], bwd)
        + modes[..., K : K + 1] * content
        + np.einsum("brk,brkn->brn", modes[..., K + 1 :], fwd)
    )
    np.testing.assert_allclose(got, want, **TOL)
    # A one-hot mode selects exactly one source.
    pick = np.zeros((B, R, 2 * K + 1), "float32")
    pick[..., K + 2] = 1.0  # forward of write head 2
    np.testing.assert_allclose(
        to_numpy(dnc.read_weighting(pick, bwd, content, fwd)), fwd[:, :, 1], **TOL
    )


def test_read_memory():
    rng = _rng()
    m = rng.standard_normal((B, N, W)).astype("float32")
    rw = _distributions(rng, (B, R, N))
    want = np.einsum("brn,bnw->brw", rw, m)
    np.testing.assert_allclose(to_numpy(dnc.read_memory(m, rw)), want, rtol=1e-5, atol=1e-5)


def test_oneplus():
    x = np.asarray([-30.0, -1.0, 0.0, 2.0, 30.0], "float32")
    np.testing.assert_allclose(
        to_numpy(dnc.oneplus(x)), 1 + np.log1p(np.exp(x.astype("float64"))), rtol=1e-6
    )


# ---------------------------------------------------------------------------
# Invariants over many random steps of the addressing maths alone.


def test_invariants_over_random_steps():
    rng = _rng()
    usage = np.zeros((B, N), "float32")
    ww = np.zeros((B, K, N), "float32")
    rw = np.zeros((B, R, N), "float32")
    p = np.zeros((B, K, N), "float32")
    link = np.zeros((B, K, N, N), "float32")
    for step in range(12):
        sharp = 10.0 if step % 2 else 1.0  # alternate sharp and soft addressing
        f = rng.random((B, R)).astype("float32")
        usage = to_numpy(dnc.usage_update(usage, ww, f, rw))
        ga = rng.random((B, K)).astype("float32")
        gw = rng.random((B, K)).astype("float32")
        alloc = to_numpy(dnc.write_allocation_weightings(usage, ga * gw))
        content = to_numpy(
            ops.softmax(sharp * rng.standard_normal((B, K, N)).astype("float32"))
        )
        ww = to_numpy(dnc.write_weighting(alloc, content, ga, gw))
        link = to_numpy(dnc.link_update(link, p, ww))
        p = to_numpy(dnc.precedence_update(p, ww))
        modes = to_numpy(ops.softmax(rng.standard_normal((B, R, 2 * K + 1)) * sharp))
        read_content = to_numpy(
            ops.softmax(sharp * rng.standard_normal((B, R, N)).astype("float32"))
        )
        rw = to_numpy(
            dnc.read_weighting(
                modes,
                dnc.backward_weighting(link, rw),
                read_content,
                dnc.forward_weighting(link, rw),
            )
        )
        eps = 1e-5
        for weights in (alloc, ww, rw, p):
            assert np.all(weights >= -eps) and np.all(weights <= 1 + eps)
            assert np.all(weights.sum(-1) <= 1 + eps)
        assert np.all(usage >= -eps) and np.all(usage <= 1 + eps)
        assert np.all(link >= -eps) and np.all(link <= 1 + eps)
        assert np.all(np.diagonal(link, axis1=-2, axis2=-1) == 0)
        assert np.all(link.sum(-1) <= 1 + eps)  # rows
        assert np.all(link.sum(-2) <= 1 + eps)  # columns


def test_gradients_finite_through_a_step_from_zero_state():
    rng = _rng()
    logits = rng.standard_normal((B, K, N)).astype("float32")
    free = rng.standard_normal((B, R)).astype("float32")
    zeros = np.zeros

    def loss(logits, free):
        usage = dnc.usage_update(
            zeros((B, N), "float32"),
            ops.softmax(logits),
            ops.sigmoid(free),
            zeros((B, R, N), "float32"),
        )
        alloc = dnc.write_allocation_weightings(usage, ops.ones((B, K)))
        ww = dnc.write_weighting(alloc, ops.softmax(logits), 0.5 * ops.ones((B, K)),
                                 ops.ones((B, K)))
        link = dnc.link_update(zeros((B, K, N, N), "float32"),
                               zeros((B, K, N), "float32"), ww)
        return ops.sum(link) + ops.sum(alloc * alloc) + ops.sum(ww)

    grads = gradients(loss, [logits, free])
    for g in grads:
        assert g is not None and np.all(np.isfinite(g))
