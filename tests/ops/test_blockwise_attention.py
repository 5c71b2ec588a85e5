"""`keras_attention.ops.blockwise_attention`: exact attention in blocks.

Checked against an independent float64 NumPy formula and against the full
path (`scaled_dot_product_attention`): outputs within 1e-5 and gradients
(queries, keys, values, bias) within 1e-4 in float32, for padding, query,
full and causal masks (with offsets), grouped heads and biases, with block
sizes that do and do not divide the lengths.
"""

import keras
import numpy as np
import pytest
from backend_utils import gradients, to_numpy
from keras import ops

from keras_attention.ops import blockwise_attention
from keras_attention.ops import scaled_dot_product_attention

BACKEND = keras.backend.backend()


def _qkv(rng, b=2, t=13, s=11, h=4, k=2, d=8, dv=6):
    q = rng.standard_normal((b, t, h, d)).astype("float32")
    key = rng.standard_normal((b, s, k, d)).astype("float32")
    value = rng.standard_normal((b, s, k, dv)).astype("float32")
    return q, key, value


def numpy_attention(q, k, v, mask=None, bias=None):
    """softmax(Q K^T / sqrt(D) + bias) V in float64; no-key rows -> 0."""
    q, k, v = (np.asarray(x, "float64") for x in (q, k, v))
    groups = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
    logits = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    allowed = np.ones(logits.shape, bool)
    if mask is not None:
        allowed = np.broadcast_to(mask, logits.shape)
    out = np.zeros(q.shape[:2] + (q.shape[2], v.shape[-1]))
    for b, h, t in np.ndindex(logits.shape[:3]):
        keys = np.flatnonzero(allowed[b, h, t])
        if keys.size == 0:
            continue
        row = logits[b, h, t, keys]
        w = np.exp(row - row.max())
        out[b, t, h] = (w / w.sum()) @ v[b, keys, h]
    return out


def _loss_and_grads(fn, args):
    """Output of `fn(*args)` and the gradients of sum(out * sin(out))."""

    def loss(*a):
        out = fn(*a)
        return ops.sum(out * ops.sin(out))

    return fn(*args), gradients(loss, args)


def _case(name, rng, q, k):
    """Masking arguments of one named case."""
    b, t, h = q.shape[:3]
    s = k.shape[1]
    if name == "none":
        return {}
    if name == "padding":
        keys = np.ones((b, s), bool)
        keys[1, 7:] = False
        return {"mask": keys[:, None, None, :]}
    if name == "query_padding":
        rows = np.ones((b, t), bool)
        rows[0, -3:] = False  # fully masked query rows
        return {"mask": rows[:, None, :, None]}
    if name == "full_mask":
        mask = rng.random((b, h, t, s)) > 0.4
        mask[0, 1, 2] = False  # a fully masked row
        return {"mask": mask}
    if name == "causal":
        return {"causal": True}
    if name == "causal_offset":
        return {"causal": True, "causal_offset": 3}
    if name == "bias":
        return {"bias": rng.standard_normal((1, h, t, s)).astype("float32")}
    if name == "key_bias":
        return {"bias": rng.standard_normal((b, 1, 1, s)).astype("float32")}
    if name == "everything":
        keys = np.ones((b, s), bool)
        keys[0, :2] = False
        return {
            "mask": keys[:, None, None, :],
            "bias": rng.standard_normal((1, h, t, s)).astype("float32"),
            "causal": True,
            "causal_offset": 1,
        }
    raise KeyError(name)


CASES = [
    "none", "padding", "query_padding", "full_mask", "causal",
    "causal_offset", "bias", "key_bias", "everything",
]
# (query block, key block): several blocks not dividing T=13 / S=11, one
# block each, and 1-wide blocks.
BLOCKS = [(4, 3), (64, 64), (1, 1)]


@pytest.mark.parametrize("blocks", BLOCKS, ids=str)
@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_matches_numpy_formula(blocks, kv_heads):
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng, k=kv_heads)
    keys = np.ones((2, 11), bool)
    keys[1, 5:] = False
    mask = keys[:, None, None, :] & np.tril(np.ones((13, 11), bool), 2)
    out = blockwise_attention(
        q, k, v, mask=keys[:, None, None, :], causal=True, causal_offset=2,
        query_block_size=blocks[0], key_block_size=blocks[1],
    )
    np.testing.assert_allclose(to_numpy(out, "float32"), numpy_attention(q, k, v, mask), atol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_output_and_gradients_equal_the_full_path(case):
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng)
    kwargs = _case(case, rng, q, k)
    bias = kwargs.pop("bias", None)
    args = [q, k, v] + ([] if bias is None else [bias])

    def run(fn, **extra):
        def call(q, k, v, bias=None):
            return fn(q, k, v, bias=bias, **kwargs, **extra)

        return _loss_and_grads(call, args)

    out, grads = run(blockwise_attention, query_block_size=4, key_block_size=3)
    ref, ref_grads = run(scaled_dot_product_attention)
    np.testing.assert_allclose(to_numpy(out, "float32"), to_numpy(ref, "float32"), atol=1e-5)
    for name, g, r in zip(("query", "key", "value", "bias"), grads, ref_grads):
        np.testing.assert_allclose(
            to_numpy(g, "float32"), to_numpy(r, "float32"), atol=1e-4, err_msg=name
        )


def test_fully_masked_rows_give_zeros_and_zero_query_gradients():
    rng = np.random.default_rng(2)
    q, k, v = _qkv(rng, b=1, t=6, s=5)
    mask = np.ones((1, 1, 6, 5), bool)
    mask[0, 0, 4:] = False

    def call(q, k, v):
        return blockwise_attention(
            q, k, v, mask=mask, query_block_size=4, key_block_size=2
        )

    out, (dq, dk, dv) = _loss_and_grads(call, [q, k, v])
    out, dq = to_numpy(out, "float32"), to_numpy(dq, "float32")
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dq))
    np.testing.assert_array_equal(out[0, 4:], 0.0)
    np.testing.assert_array_equal(dq[0, 4:], 0.0)
    assert np.abs(out[0, :4]).sum() > 0


def test_a_list_of_masks_equals_their_merged_mask():
    rng = np.random.default_rng(3)
    q, k, v = _qkv(rng)
    queries = rng.random((2, 1, 13, 1)) > 0.2
    keys = rng.random((2, 1, 1, 11)) > 0.3
    heads = rng.random((1, 4, 13, 11)) > 0.1
    out = blockwise_attention(
        q, k, v, mask=[queries, None, keys, heads], query_block_size=5,
        key_block_size=4,
    )
    ref = numpy_attention(q, k, v, queries & keys & heads)
    np.testing.assert_allclose(to_numpy(out, "float32"), ref, atol=1e-5)


def test_causal_skipping_with_tensor_offset_matches_rows_of_the_full_pass():
    """Decoding 3 tokens at positions 5..7 of an 11-key cache."""
    rng = np.random.default_rng(4)
    q, k, v = _qkv(rng, t=11)
    full = blockwise_attention(q, k, v, causal=True, query_block_size=2,
                               key_block_size=3)
    chunk = blockwise_attention(
        q[:, 5:8], k, v, causal=True, causal_offset=ops.convert_to_tensor(5),
        query_block_size=2, key_block_size=3,
    )
    np.testing.assert_allclose(
        to_numpy(chunk, "float32"), to_numpy(full, "float32")[:, 5:8], atol=1e-5
    )
    np.testing.assert_allclose(
        to_numpy(full, "float32"), numpy_attention(q, k, v, np.tril(np.ones((11, 11), bool))),
        atol=1e-5,
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_finite_and_close_to_the_full_path(dtype):
    rng = np.random.default_rng(5)
    q, k, v = (ops.cast(x * 4, dtype) for x in _qkv(rng))  # large logits
    mask = np.ones((2, 1, 1, 11), bool)
    mask[0, ..., 3:] = False
    out = blockwise_attention(q, k, v, mask=mask, causal=True,
                              query_block_size=4, key_block_size=3)
    ref = scaled_dot_product_attention(q, k, v, mask=mask, causal=True)
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    assert np.all(np.isfinite(to_numpy(out, "float32")))
    np.testing.assert_allclose(to_numpy(out, "float32"), to_numpy(ref, "float32"), atol=0.1)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs")
@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_with_unknown_lengths(jit_compile):
    import tensorflow as tf

    rng = np.random.default_rng(6)
    q, k, v = _qkv(rng)
    mask = rng.random((2, 1, 1, 11)) > 0.3

    def grads(fn, q, k, v, mask):
        with tf.GradientTape() as tape:
            tape.watch([q, k, v])
            out = fn(q, k, v, mask=mask, causal=True)
            loss = tf.reduce_sum(out * tf.sin(out))
        return [out] + tape.gradient(loss, [q, k, v])

    def blockwise(*args, **kwargs):
        return blockwise_attention(*args, **kwargs, query_block_size=4,
                                   key_block_size=3)

    signature = [
        tf.TensorSpec((None, None, 4, 8)),
        tf.TensorSpec((None, None, 2, 8)),
        tf.TensorSpec((None, None, 2, 6)),
        tf.TensorSpec((None, 1, 1, None), tf.bool),
    ]
    compiled = tf.function(
        lambda *a: grads(blockwise, *a),
        input_signature=None if jit_compile else signature,
        jit_compile=jit_compile,
    )
    got = compiled(*(tf.constant(x) for x in (q, k, v, mask)))
    want = grads(scaled_dot_product_attention, *(tf.constant(x) for x in (q, k, v, mask)))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-4)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs")
def test_no_tensor_of_the_score_matrix_size_in_forward_or_backward():
    """The memory claim, structurally: with T = S = 256 and 32 x 32 blocks,
    no tensor of the traced forward+backward graph (loop bodies included)
    holds T * S elements or more, while the full path does."""
    import tensorflow as tf

    t = 256
    spec = tf.TensorSpec((1, t, 1, 8))

    def largest_tensor(fn):
        @tf.function
        def step(q, k, v):
            with tf.GradientTape() as tape:
                tape.watch([q, k, v])
                out = fn(q, k, v)
            return tape.gradient(out, [q, k, v])

        graphs = [step.get_concrete_function(spec, spec, spec).graph]
        largest = 0
        while graphs:  # the function graph and every loop/branch body in it
            for op in graphs.pop().get_operations():
                for attr in ("_body_graph", "_cond_graph", "_true_graph",
                             "_false_graph"):
                    if getattr(op, attr, None) is not None:
                        graphs.append(getattr(op, attr))
                for out in op.outputs:
                    if out.shape.rank and out.shape.is_fully_defined():
                        largest = max(largest, out.shape.num_elements())
        return largest

    def blockwise(q, k, v):
        return blockwise_attention(q, k, v, causal=True, query_block_size=32,
                                   key_block_size=32)

    def full(q, k, v):
        return scaled_dot_product_attention(q, k, v, causal=True)

    assert largest_tensor(full) >= t * t
    assert largest_tensor(blockwise) < t * t // 4


@pytest.mark.parametrize("name", ["query_block_size", "key_block_size"])
@pytest.mark.parametrize("value", [0, -2, 1.5, True, None])
def test_bad_block_size(name, value):
    x = np.zeros((1, 3, 1, 2), "float32")
    with pytest.raises(ValueError, match=f"argument `{name}`, expected a positive"):
        blockwise_attention(x, x, x, **{name: value})


def test_shape_errors_use_the_shared_checks():
    q = np.zeros((1, 3, 2, 4), "float32")
    with pytest.raises(ValueError, match="argument `query`, expected a rank-4"):
        blockwise_attention(q[0], q, q)
    with pytest.raises(ValueError, match="argument `mask`"):
        blockwise_attention(q, q, q, mask=np.ones((1, 1, 3, 5), bool))
    with pytest.raises(ValueError, match="argument `mask`"):
        blockwise_attention(q, q, q, mask=[np.ones((1, 1, 1, 3), bool),
                                           np.ones((4, 3), bool)])
    with pytest.raises(ValueError, match="argument `bias`"):
        blockwise_attention(q, q, q, bias=np.ones((1, 3, 3, 3), "float32"))
