"""`keras_attention.ops.dot_layout` and the XLA route of the head products.

Under `jit_compile=True` the gradients of `attention_logits` and
`attention_combine`, and `blockwise_attention`'s backward products, are
computed as canonical dots on copied transposes. Values and gradients must
equal the einsum forms (checked against NumPy formulas); the optimized HLO
must hold no dot that contracts a leading axis (the form XLA:CPU runs
slowly), which is what the route is for.
"""

import re

import numpy as np
import pytest

pytestmark = pytest.mark.tf_only(reason="XLA compilation through tf.function")

tf = pytest.importorskip("tensorflow")
import keras  # noqa: E402

from hlo_utils import dots  # noqa: E402
from hlo_utils import token_axis_dots  # noqa: E402

from keras_attention.ops import attention_combine  # noqa: E402
from keras_attention.ops import attention_logits  # noqa: E402
from keras_attention.ops import blockwise_attention  # noqa: E402
from keras_attention.ops.dot_layout import canonical_einsum  # noqa: E402
from keras_attention.ops.dot_layout import canonical_matmul  # noqa: E402
from keras_attention.ops.dot_layout import in_xla_context  # noqa: E402
from keras_attention.ops.dot_layout import materialized_transpose  # noqa: E402


def _xla(fn):
    return tf.function(fn, jit_compile=True)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64", "int32"])
@pytest.mark.parametrize("jit", [False, True])
def test_materialized_transpose_equals_transpose(dtype, jit):
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    x = tf.constant(x, dtype)
    perm = (0, 3, 1, 2)
    fn = _xla(materialized_transpose) if jit else materialized_transpose
    out = fn(x, perm)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(
        np.asarray(tf.cast(out, "float64")),
        np.transpose(np.asarray(tf.cast(x, "float64")), perm),
    )


def test_materialized_transpose_gradient_is_the_inverse_transpose():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((2, 3, 4)), "float32")
    upstream = rng.standard_normal((4, 2, 3)).astype("float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = materialized_transpose(x, (2, 0, 1))
        loss = tf.reduce_sum(out * upstream)
    grad = tape.gradient(loss, x)
    np.testing.assert_array_equal(grad, np.transpose(upstream, (1, 2, 0)))


EQUATIONS = [
    ("bskm,bske->bkme", (2, 7, 3, 4), (2, 7, 3, 5)),  # Performer's K^T V
    ("btkgm,bkme->btkge", (2, 5, 3, 2, 4), (2, 3, 4, 6)),  # its numerator
    ("bnckm,bncke->bnkme", (2, 3, 4, 2, 5), (2, 3, 4, 2, 6)),  # per chunk
    ("bkts,bktd->bksd", (2, 3, 5, 6), (2, 3, 5, 4)),  # P^T dO
    ("bthd,bshd->bhts", (2, 5, 3, 4), (2, 6, 3, 4)),  # Q K^T
    ("ij,jk->ik", (3, 4), (4, 5)),  # no batch axis
]


@pytest.mark.parametrize("equation,a_shape,b_shape", EQUATIONS)
@pytest.mark.parametrize("jit", [False, True])
def test_canonical_einsum_value_and_gradients(equation, a_shape, b_shape, jit):
    rng = np.random.default_rng(1)
    a = tf.constant(rng.standard_normal(a_shape), "float32")
    b = tf.constant(rng.standard_normal(b_shape), "float32")
    a64, b64 = np.float64(a), np.float64(b)
    want = np.einsum(equation, a64, b64)
    upstream = rng.standard_normal(want.shape).astype("float32")

    def fn(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            out = canonical_einsum(equation, a, b)
            loss = tf.reduce_sum(out * upstream)
        return (out,) + tuple(tape.gradient(loss, [a, b]))

    out, d_a, d_b = (_xla(fn) if jit else fn)(a, b)
    lhs, rhs_out = equation.split(",")
    rhs, result = rhs_out.split("->")
    np.testing.assert_allclose(out, want, atol=1e-5)
    # The gradients by the einsum identities, in float64.
    np.testing.assert_allclose(
        d_a, np.einsum(f"{result},{rhs}->{lhs}", upstream, b64), atol=1e-5
    )
    np.testing.assert_allclose(
        d_b, np.einsum(f"{lhs},{result}->{rhs}", a64, upstream), atol=1e-5
    )


@pytest.mark.parametrize("x_shape,w_shape", [((64, 8), (8, 16)), ((64, 16), (16, 8))])
@pytest.mark.parametrize("jit", [False, True])
def test_canonical_matmul_value_and_gradients(x_shape, w_shape, jit):
    rng = np.random.default_rng(2)
    x = tf.constant(rng.standard_normal(x_shape), "float32")
    w = tf.constant(rng.standard_normal(w_shape), "float32")
    upstream = rng.standard_normal((x_shape[0], w_shape[1])).astype("float32")

    def fn(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            loss = tf.reduce_sum(canonical_matmul(x, w) * upstream)
        return (canonical_matmul(x, w),) + tuple(tape.gradient(loss, [x, w]))

    out, d_x, d_w = (_xla(fn) if jit else fn)(x, w)
    x64, w64 = np.float64(x), np.float64(w)
    np.testing.assert_allclose(out, x64 @ w64, atol=1e-5)
    np.testing.assert_allclose(d_x, upstream @ w64.T, atol=1e-5)  # dY W^T
    np.testing.assert_allclose(d_w, x64.T @ upstream, atol=1e-4)  # X^T dY


def test_canonical_matmul_of_other_ranks_is_matmul():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    w = rng.standard_normal((4, 3)).astype("float32")
    got = _xla(canonical_matmul)(tf.constant(x), tf.constant(w))
    np.testing.assert_allclose(got, x @ w, atol=1e-5)


@pytest.mark.parametrize("product", ["matmul", "canonical_matmul"])
def test_compiled_kernel_gradient_is_canonical_only_through_the_route(product):
    x = tf.constant(np.ones((256, 32)), "float32")
    w = tf.constant(np.ones((32, 64)), "float32")
    multiply = tf.matmul if product == "matmul" else canonical_matmul

    def fn(x, w):
        with tf.GradientTape() as tape:
            tape.watch(w)
            loss = tf.reduce_sum(tf.sin(multiply(x, w)))
        return tape.gradient(loss, w)

    hlo = _xla(fn).experimental_get_compiler_ir(x, w)(stage="optimized_hlo")
    assert dots(hlo)
    # The plain product's kernel gradient is the token-axis form (so the
    # pattern sees it); the route leaves none.
    assert len(token_axis_dots(hlo)) == (1 if product == "matmul" else 0)


def test_canonical_einsum_second_order_equals_einsum():
    rng = np.random.default_rng(5)
    equation = "bskm,bske->bkme"
    a = tf.constant(rng.standard_normal((2, 7, 3, 4)), "float32")
    b = tf.constant(rng.standard_normal((2, 7, 3, 5)), "float32")

    def fn(a, b, einsum):
        with tf.GradientTape() as outer:
            outer.watch([a, b])
            with tf.GradientTape() as inner:
                inner.watch([a, b])
                loss = tf.reduce_sum(tf.sin(einsum(equation, a, b)))
            grads = inner.gradient(loss, [a, b])
            norm = tf.add_n([tf.reduce_sum(g * g) for g in grads])
        return grads + outer.gradient(norm, [a, b])

    got = _xla(lambda a, b: fn(a, b, canonical_einsum))(a, b)
    for got_one, want in zip(got, fn(a, b, tf.einsum)):
        np.testing.assert_allclose(got_one, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "equation", ["b...m,bm->b...", "bsm,bs->bm", "bi,bi->b", "bi,bj->bij"]
)
def test_canonical_einsum_other_equations_equal_einsum(equation):
    # Ellipsis and a summed index in one operand only: plain `ops.einsum`;
    # a contraction to the batch axis only and an outer product (no
    # contracted index): XLA's own lowering.
    rng = np.random.default_rng(6)
    shapes = {
        "b...m,bm->b...": [(2, 3, 4), (2, 4)],
        "bsm,bs->bm": [(2, 3, 4), (2, 3)],
        "bi,bi->b": [(2, 3), (2, 3)],
        "bi,bj->bij": [(2, 3), (2, 4)],
    }[equation]
    operands = [rng.standard_normal(s).astype("float32") for s in shapes]
    got = _xla(lambda a, b: canonical_einsum(equation, a, b))(*operands)
    np.testing.assert_allclose(got, np.einsum(equation, *operands), atol=1e-5)


def test_in_xla_context():
    assert not in_xla_context()  # eager
    assert not bool(tf.function(lambda: tf.constant(in_xla_context()))())
    assert bool(_xla(lambda: tf.constant(in_xla_context()))())

    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            seen.append(in_xla_context())
            return x

    for jit in (True, False):
        seen.clear()
        model = keras.Sequential([keras.Input((3,)), Probe(), keras.layers.Dense(1)])
        model.compile("sgd", "mse", jit_compile=jit)
        model.train_on_batch(np.ones((2, 3)), np.ones((2, 1)))
        assert seen[-1] is jit  # the train step's trace


def _head_case(rng, kv_heads):
    q = rng.standard_normal((2, 5, 4, 8))  # (B, T, H, D)
    k = rng.standard_normal((2, 6, kv_heads, 8))  # (B, S, K, D)
    v = rng.standard_normal((2, 6, kv_heads, 3))  # (B, S, K, Dv)
    w = rng.standard_normal((2, 4, 5, 6))  # (B, H, T, S)
    r_logits = rng.standard_normal((2, 4, 5, 6))
    r_out = rng.standard_normal((2, 5, 4, 3))
    return [tf.constant(x, "float32") for x in (q, k, v, w, r_logits, r_out)]


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("jit", [False, True])
def test_head_product_gradients_match_numpy(kv_heads, jit):
    q, k, v, w, r_logits, r_out = _head_case(np.random.default_rng(2), kv_heads)
    scale = 0.3

    def fn(q, k, v, w):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([q, k, v, w])
            logits = attention_logits(q, k, scale)
            out = attention_combine(w, v)
            loss_l = tf.reduce_sum(logits * r_logits)
            loss_o = tf.reduce_sum(out * r_out)
        return (logits, out, *tape.gradient(loss_l, [q, k]),
                *tape.gradient(loss_o, [w, v]))

    logits, out, d_q, d_k, d_w, d_v = (_xla(fn) if jit else fn)(q, k, v, w)
    q, k, v, w, r_logits, r_out = (np.float64(x) for x in (q, k, v, w, r_logits, r_out))
    groups = 4 // kv_heads
    k_rep, v_rep = np.repeat(k, groups, 2), np.repeat(v, groups, 2)
    np.testing.assert_allclose(
        logits, scale * np.einsum("bthd,bshd->bhts", q, k_rep), atol=1e-5
    )
    np.testing.assert_allclose(out, np.einsum("bhts,bshd->bthd", w, v_rep), atol=1e-5)
    np.testing.assert_allclose(
        d_q, scale * np.einsum("bhts,bshd->bthd", r_logits, k_rep), atol=1e-5
    )
    d_k_heads = scale * np.einsum("bhts,bthd->bshd", r_logits, q)  # (B, S, H, D)
    np.testing.assert_allclose(
        d_k, d_k_heads.reshape(2, 6, kv_heads, groups, 8).sum(3), atol=1e-5
    )
    np.testing.assert_allclose(d_w, np.einsum("bthd,bshd->bhts", r_out, v_rep), atol=1e-5)
    d_v_heads = np.einsum("bhts,bthd->bshd", w, r_out)  # (B, S, H, Dv)
    np.testing.assert_allclose(
        d_v, d_v_heads.reshape(2, 6, kv_heads, groups, 3).sum(3), atol=1e-5
    )


def test_second_order_gradients_equal_the_einsum_route():
    q, k, v, _, _, r_out = _head_case(np.random.default_rng(3), 2)

    def fn(q, k, v):
        with tf.GradientTape() as outer:
            outer.watch([q, k, v])
            with tf.GradientTape() as inner:
                inner.watch([q, k, v])
                weights = tf.nn.softmax(attention_logits(q, k, 0.5))
                loss = tf.reduce_sum(attention_combine(weights, v) * r_out)
            grads = inner.gradient(loss, [q, k, v])
            norm = tf.add_n([tf.reduce_sum(g * g) for g in grads])
        return grads + outer.gradient(norm, [q, k, v])

    for got, want in zip(_xla(fn)(q, k, v), fn(q, k, v)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _leading_axis_dots(optimized_hlo):
    """Batched dots whose lhs contracts an axis other than its last (rhs
    contracting its last axis, `A B^T`, runs at full speed)."""
    bad = []
    for line in dots(optimized_hlo):
        if "lhs_batch_dims" not in line:
            continue
        rank = len(re.search(r"= \w+\[([\d,]*)\]", line).group(1).split(","))
        lhs = int(re.search(r"lhs_contracting_dims=\{(\d+)\}", line).group(1))
        if lhs != rank - 1:
            bad.append(line)
    return bad


def _compiled_backward_hlo(kernel, length=64, block=None):
    rng = np.random.default_rng(4)
    q, k, v = (
        tf.constant(rng.standard_normal((2, length, 2, 16)), "float32")
        for _ in range(3)
    )

    def fn(q, k, v):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            if kernel == "full":
                weights = tf.nn.softmax(attention_logits(q, k, 0.25))
                out = attention_combine(weights, v)
            else:
                out = blockwise_attention(
                    q, k, v, query_block_size=block, key_block_size=block
                )
            loss = tf.reduce_sum(out * out)
        return tape.gradient(loss, [q, k, v])

    return _xla(fn).experimental_get_compiler_ir(q, k, v)(stage="optimized_hlo")


@pytest.mark.parametrize("kernel", ["full", "blockwise"])
def test_compiled_backward_has_only_canonical_batched_dots(kernel):
    # Blockwise: two query blocks of 256 rows (the route's threshold).
    hlo = _compiled_backward_hlo(kernel, length=512, block=256)
    assert dots(hlo)  # the pattern sees the dots
    assert _leading_axis_dots(hlo) == []


def test_small_blockwise_blocks_keep_the_plain_products():
    # Under 256 rows per block the plain einsums were faster and stay: the
    # HLO then holds the leading-axis form (which the check above detects).
    hlo = _compiled_backward_hlo("blockwise", length=64, block=32)
    assert len(_leading_axis_dots(hlo)) >= 2  # dV and dK


@pytest.mark.parametrize("kv_heads", [None, 1])
def test_compiled_training_step_equals_the_uncompiled_one(kv_heads):
    # The route end to end: a Transformer block trained one step with
    # `jit_compile=True` (canonical dots) and `False` (einsums) from the same
    # weights ends with the same loss and weights.
    from keras_attention.layers import TransformerEncoderBlock

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 12, 16)).astype("float32")
    y = rng.standard_normal((2, 12, 16)).astype("float32")
    mask = np.ones((2, 12), bool)
    mask[1, 8:] = False
    results = []
    for jit in (True, False):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((12, 16))
        padding = keras.Input((12,), dtype="bool")
        block = TransformerEncoderBlock(
            num_heads=4, intermediate_dim=32, num_key_value_heads=kv_heads
        )
        model = keras.Model([inputs, padding], block(inputs, padding_mask=padding))
        model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=jit)
        loss = model.train_on_batch([x, mask], y)
        results.append((loss, [np.asarray(w) for w in model.weights]))
    (loss_jit, weights_jit), (loss_eager, weights_eager) = results
    np.testing.assert_allclose(loss_jit, loss_eager, rtol=1e-5)
    for got, want in zip(weights_jit, weights_eager):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_compiled_training_under_mixed_precision_is_finite():
    from keras_attention.layers import TransformerEncoderBlock

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((12, 16))
        outputs = TransformerEncoderBlock(num_heads=4, intermediate_dim=32)(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1, dtype="float32")(outputs))
        model.compile("adam", "mse", jit_compile=True)
        x = np.random.default_rng(8).standard_normal((4, 12, 16)).astype("float32")
        history = model.fit(x, np.zeros((4, 12, 1)), epochs=3, verbose=0)
    finally:
        keras.config.set_dtype_policy(policy)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
