"""Batched products laid out for the fast path of XLA:CPU's dot.

Attention's backward pass needs products that contract the *leading* axis of
both operands, e.g. `dV = P^T dO` and `dK = dS^T Q` (sum over the query
axis). XLA folds a transpose that feeds a dot into the dot's dimension
numbers, and XLA:CPU (TensorFlow 2.21) runs such a batched dot far below its
canonical `(M, K) x (K, N)` rate: for `(128, 256, 256)^T x (128, 256, 64)`
float32 on the 2-core CI machine, 13.6 ms (79 GFLOP/s) against 3.4 ms for
the plain product of the same size (measured with `jit_compile=True`).

`leading_axis_matmul` computes `a^T b` as the canonical product
`(b^T a)^T` on a *copied* `b^T`, and copies the result back: the copies are
of the small `(T, D)` / `(S, D)` operands, and the product runs at the
canonical rate. `materialized_transpose` is the copy: a transpose behind an
XLA optimization barrier, which XLA can neither fold into the dot nor undo
by layout assignment. The results equal the einsum's; only the speed
differs.

Only code being compiled by XLA takes this route (`in_xla_context`):
TensorFlow's own batched matmul (`jit_compile=False`) reads transposed
operands at full speed, and the extra copies would cost it time. On other
backends the functions are the plain `keras.ops` forms.

This module imports nothing from `keras_attention`.
"""

import keras
from keras import ops


def _inverse(perm):
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return inverse


def materialized_transpose(x, perm):
    """`ops.transpose(x, perm)` that XLA keeps as a copy of `x`.

    Under XLA compilation (`in_xla_context`) on TensorFlow the transpose
    sits between two XLA optimization barriers, so that XLA can fold it
    neither into the dot that produces `x` nor into the one that consumes
    the result. The gradient is the inverse transpose (the same
    way), so the function is differentiable to any order. Elsewhere it is
    `ops.transpose`.

    Args:
        x: a tensor.
        perm: permutation of `range(rank(x))` (list or tuple of ints).

    Returns:
        The transposed tensor, equal to `ops.transpose(x, perm)`.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops.dot_layout import materialized_transpose
    x = np.arange(6, dtype="float32").reshape(1, 2, 3)
    tuple(materialized_transpose(x, (0, 2, 1)).shape)  # (1, 3, 2)
    ```
    """
    perm = [int(p) for p in perm]
    barrier = _xla_barrier() if in_xla_context() else None
    if barrier is None:
        return ops.transpose(x, perm)
    import tensorflow as tf

    @tf.custom_gradient
    def transpose(value):
        # Barriers on both sides: the transpose can be folded neither into
        # the op that produces `value` (e.g. a dot, by swapping its
        # operands) nor into the one that consumes the result.
        held = barrier([value])[0]
        out = barrier([tf.transpose(held, perm)])[0]

        def grad(upstream):
            return materialized_transpose(upstream, _inverse(perm))

        return out, grad

    return transpose(x)


def _xla_barrier():
    """TensorFlow's `XlaOptimizationBarrier` op, or None where this
    TensorFlow does not expose it."""
    try:
        from tensorflow.compiler.tf2xla.ops import gen_xla_ops
    except ImportError:  # pragma: no cover - internal module moved
        return None
    return getattr(gen_xla_ops, "xla_optimization_barrier", None)


def in_xla_context():
    """Whether TensorFlow is tracing code for XLA compilation.

    True inside a `tf.function(jit_compile=True)`, e.g. the train step of
    a model compiled with `jit_compile=True`, at trace time; False on other
    backends, eagerly, and in graphs TensorFlow runs itself (also if this
    TensorFlow lacks the internal helper it asks).
    """
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - internal module moved
        return False
    if tf.executing_eagerly():
        return False
    return bool(
        control_flow_util.GraphOrParentsInXlaContext(
            tf.compat.v1.get_default_graph()
        )
    )


def leading_axis_matmul(a, b):
    """Batched `a^T b` over the leading axis: `(..., T, S), (..., T, D) ->
    (..., S, D)`, i.e. `einsum("...ts,...td->...sd", a, b)`.

    Under XLA compilation (`in_xla_context`) computed as the canonical
    product `b^T a` on a copied `b^T`, transposed back by a copy (see the
    module docstring: XLA:CPU runs the folded form about 4x slower);
    otherwise an einsum. Differentiable.

    Args:
        a: `(..., T, S)` tensor.
        b: `(..., T, D)` tensor with the same batch axes and dtype.

    Returns:
        `(..., S, D)` tensor.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops.dot_layout import leading_axis_matmul
    a = np.random.rand(2, 5, 3).astype("float32")
    b = np.random.rand(2, 5, 4).astype("float32")
    out = leading_axis_matmul(a, b)
    np.allclose(out, np.einsum("bts,btd->bsd", a, b), atol=1e-5)  # True
    ```
    """
    if not in_xla_context():
        return ops.einsum("...ts,...td->...sd", a, b)
    rank = len(b.shape)
    swap = list(range(rank - 2)) + [rank - 1, rank - 2]
    b_t = materialized_transpose(b, swap)  # (..., D, T)
    return materialized_transpose(ops.matmul(b_t, a), swap)  # (..., S, D)
