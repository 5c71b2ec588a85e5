"""Batched products laid out for the fast path of XLA:CPU's dot.

Attention's backward pass needs products that contract the *leading* axis of
both operands, e.g. `dV = P^T dO` and `dK = dS^T Q` (sum over the query
axis). XLA folds a transpose that feeds a dot into the dot's dimension
numbers, and XLA:CPU (TensorFlow 2.21) runs such a batched dot far below its
canonical `(M, K) x (K, N)` rate: for `(128, 256, 256)^T x (128, 256, 64)`
float32 on the 2-core CI machine, 13.6 ms (79 GFLOP/s) against 3.4 ms for
the plain product of the same size (measured with `jit_compile=True`).

`canonical_einsum` computes a two-operand einsum as one canonical batched
product on copied operands, e.g. `dV = P^T dO` as `(dO^T P)^T` with `dO^T`
copied and the result copied back: the copies are of the small `(T, D)` /
`(S, D)` operands (of the two orientations the one copying less is taken),
and the product runs at the canonical rate. Its gradients are einsums of
the same kind, computed the same way. `materialized_transpose` is the copy:
a transpose between XLA optimization barriers, which XLA can neither fold
into a dot nor undo by layout assignment. The results equal the einsum's;
only the speed differs.

Only code being compiled by XLA takes this route (`in_xla_context`):
TensorFlow's own batched matmul (`jit_compile=False`) reads transposed
operands at full speed, and the extra copies would cost it time. On other
backends the functions are the plain `keras.ops` forms.

Users: `canonical_matmul`, the training product of the per-token
projections and feed-forward layers (`TokenProjection`, `TokenDense`),
whose kernel gradient `dW = X^T dY` sums over the tokens;
`attention_logits` / `attention_combine` (the "full" attention path)
with as many key/value heads as query heads, and the backward pass of
`blockwise_attention` for blocks of at least 256 rows, where it was
measured to help (`benchmarks/attention_core.py --blockwise
--einsum-gradients`). With grouped heads XLA's own lowering
was as fast (2 key/value heads of 8) or faster (multi-query: 50-55 ms
against 57-60 ms for the attention of size (b)), so they keep it. Performer's sums over the sequence
(`phi(K)^T V`) were tried as well and measured no faster with a real
upstream gradient, so they stay plain einsums.

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
    if perm == sorted(perm):
        return x  # nothing to move
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


def canonical_einsum(equation, a, b):
    """`ops.einsum(equation, a, b)` run as canonical batched dots under XLA.

    For a two-operand einsum whose every index appears in at least two of
    the operands and the output (batch indices in all three, contracted
    ones in both operands, free ones in one operand and the output), e.g.
    `"bskm,bske->bkme"`. Under XLA compilation (`in_xla_context`) the
    operands are copied into `(batch, free, contracted)` and `(batch,
    contracted, free)` order, multiplied as one `(..., M, K) x (..., K, P)`
    product and copied into the output order; the gradients are the two
    einsums of the same kind, computed the same way, so no product of the
    forward or backward pass contracts a leading axis (see the module
    docstring). An einsum that contracts the last axes of an operand (such
    as `Q K^T` or `P V`) keeps XLA's own lowering, which is fast, and only
    its gradients take this route. Otherwise, and for other equations, it
    is `ops.einsum`.

    Args:
        equation: `"lhs,rhs->out"` with one letter per axis (no ellipsis,
            no letter twice in one operand).
        a: tensor for `lhs`.
        b: tensor for `rhs`, same dtype.

    Returns:
        The einsum's value.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops.dot_layout import canonical_einsum
    k = np.random.rand(2, 7, 3, 4).astype("float32")  # (B, S, K, M)
    v = np.random.rand(2, 7, 3, 5).astype("float32")  # (B, S, K, E)
    kv = canonical_einsum("bskm,bske->bkme", k, v)  # sum over S
    np.allclose(kv, np.einsum("bskm,bske->bkme", k, v), atol=1e-5)  # True
    ```
    """
    labels = _einsum_labels(equation)
    if labels is None or not in_xla_context():
        return ops.einsum(equation, a, b)
    import tensorflow as tf

    lhs, rhs, out = labels

    @tf.custom_gradient
    def product(x, y):
        def grad(d_out):
            return (
                canonical_einsum(f"{out},{rhs}->{lhs}", d_out, y),
                canonical_einsum(f"{lhs},{out}->{rhs}", x, d_out),
            )

        if _trailing_contraction(lhs, rhs, out):
            return ops.einsum(equation, x, y), grad  # XLA's own form is fast
        return _batched_dot(lhs, rhs, out, x, y), grad

    return product(a, b)


def canonical_matmul(x, kernel):
    """`ops.matmul(x, kernel)` of a `(M, K)` input and a `(K, N)` kernel
    whose kernel gradient runs as a canonical dot under XLA.

    The forward product and the input gradient `dX = dY W^T` keep XLA's own
    lowering, which is fast; the kernel gradient `dW = X^T dY` contracts
    the leading (token) axis of both operands, which XLA:CPU runs below the
    canonical rate, so under XLA compilation it is computed by
    `canonical_einsum` (the smaller operand is copied transposed). Outside
    XLA, and on other backends, it is `ops.matmul`.

    Args:
        x: `(M, K)` tensor (tokens, features).
        kernel: `(K, N)` tensor, same dtype.

    Returns:
        The `(M, N)` product.

    Example:

    ```python
    import numpy as np
    from keras_attention.ops.dot_layout import canonical_matmul
    x = np.random.rand(6, 4).astype("float32")
    w = np.random.rand(4, 3).astype("float32")
    np.allclose(canonical_matmul(x, w), x @ w, atol=1e-6)  # True
    ```
    """
    if len(x.shape) != 2 or len(kernel.shape) != 2 or not in_xla_context():
        return ops.matmul(x, kernel)
    return canonical_einsum("mk,kn->mn", x, kernel)


def _trailing_contraction(lhs, rhs, out):
    """Whether the contracted axes are the last axes of an operand: then
    XLA's own lowering reads that operand along its rows and needs no
    leading-axis contraction (e.g. `Q K^T`, `P V`); so does a product with
    nothing contracted."""
    contracted = {c for c in lhs if c in rhs and c not in out}
    n = len(contracted)
    if n == 0:
        return True  # an outer product: no contraction at all
    return set(lhs[-n:]) == contracted or set(rhs[-n:]) == contracted


def _einsum_labels(equation):
    """`(lhs, rhs, out)` of a two-operand einsum that `canonical_einsum`
    handles, else None."""
    if "..." in equation or "->" not in equation:
        return None
    inputs, out = equation.replace(" ", "").split("->")
    parts = inputs.split(",")
    if len(parts) != 2:
        return None
    lhs, rhs = parts
    for part in (lhs, rhs, out):
        if len(set(part)) != len(part) or not part.isalpha():
            return None
    every = set(lhs) | set(rhs) | set(out)
    if any(sum(label in p for p in (lhs, rhs, out)) < 2 for label in every):
        return None
    return lhs, rhs, out


def _batched_dot(lhs, rhs, out, a, b):
    """The einsum as one `(..., M, K) x (..., K, P)` product on copied
    operands (the batch axes first, in the output's order).

    Of the two orientations, `out = A B` and `out^T = B^T A^T`, and the two
    orders of the contracted axes (either operand's), the choice that
    copies fewer elements is taken (an operand already in the order it
    needs is not copied): e.g. `dV = P^T dO` copies `dO` and not `P`, and a
    sum over `(G, T)` keeps the order of the operand that has it.
    """
    batch = [c for c in out if c in lhs and c in rhs]
    contracted = [c for c in lhs if c in rhs and c not in out]
    free_a = [c for c in lhs if c not in rhs]
    free_b = [c for c in rhs if c not in lhs]
    sizes, static = {}, {}
    for labels, x in ((lhs, a), (rhs, b)):
        shape = ops.shape(x)
        for i, c in enumerate(labels):
            if c not in sizes or not isinstance(sizes[c], int):
                sizes[c] = shape[i]
            static[c] = x.shape[i] or static.get(c) or 1

    def size(group):
        total = 1
        for c in group:
            total = total * sizes[c]
        return total

    def copies(labels, order):
        if list(labels) == order:
            return 0
        count = 1
        for c in labels:
            count *= static[c]
        return count

    def cost(choice):
        (first_labels, _), (second_labels, _), first_free, second_free, summed = choice
        order = batch + first_free + second_free
        return (copies(first_labels, batch + first_free + summed)
                + copies(second_labels, batch + summed + second_free)
                + copies(order, list(out)))

    # Orientation (A B or B^T A^T) and the order of the contracted axes
    # (as in either operand): the choice that copies least.
    in_rhs_order = [c for c in rhs if c in contracted]
    choices = [
        (first, second, first_free, second_free, summed)
        for first, second, first_free, second_free in (
            ((lhs, a), (rhs, b), free_a, free_b),
            ((rhs, b), (lhs, a), free_b, free_a),
        )
        for summed in (contracted, in_rhs_order)
    ]
    (first_labels, first), (second_labels, second), first_free, second_free, summed = (
        min(choices, key=cost)
    )
    first = materialized_transpose(
        first, [first_labels.index(c) for c in batch + first_free + summed]
    )
    second = materialized_transpose(
        second, [second_labels.index(c) for c in batch + summed + second_free]
    )
    batch_sizes = [sizes[c] for c in batch]
    first = ops.reshape(first, batch_sizes + [size(first_free), size(summed)])
    second = ops.reshape(second, batch_sizes + [size(summed), size(second_free)])
    order = batch + first_free + second_free
    result = ops.reshape(ops.matmul(first, second), [sizes[c] for c in order])
    return materialized_transpose(result, [order.index(c) for c in out])
