"""Helpers for tests that read XLA's optimized HLO (TensorFlow only): which
matrix products a compiled function keeps, and in which layout."""

import re


def dots(optimized_hlo):
    """The `dot` instructions of `optimized_hlo`, one line each."""
    return re.findall(r"= \S+ dot\([^)]*\)[^\n]*", optimized_hlo)


def token_axis_dots(optimized_hlo):
    """2-D dots whose lhs contracts its first axis (`X^T dY`, a sum over the
    tokens: the form XLA:CPU runs below the canonical rate)."""
    return [line for line in dots(optimized_hlo)
            if "lhs_batch_dims" not in line and "lhs_contracting_dims={0}" in line]


def gradient_hlo(loss_fn, x, variables):
    """Optimized HLO of the gradient of `loss_fn(x)` with respect to
    `variables`, compiled with `tf.function(jit_compile=True)`."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            loss = loss_fn(x)
        return tape.gradient(loss, variables)

    return step.experimental_get_compiler_ir(x)(stage="optimized_hlo")
