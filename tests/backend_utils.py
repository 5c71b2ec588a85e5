"""Backend-neutral test helpers: NumPy values, gradients, compiled functions.

The layer tests run on the TensorFlow backend (the default), on JAX
(`KERAS_BACKEND=jax`) and on PyTorch (`KERAS_BACKEND=torch`). These helpers
let one test body take gradients on any of them, or compile a function with
XLA on TensorFlow and JAX (on PyTorch the XLA tests skip); tests that are TensorFlow-only by
nature (SavedModel, tf.data, ...) use the `tf_only` marker instead (see
`conftest.py`).
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()

# Test-sized programs on XLA:CPU (JAX): LLVM's optimisation passes cost more
# than the programs run (the model-builder checks on JAX, then a subprocess
# of the default suite, alone on this 2-core machine: 47.5 s -> 30.1 s).
FAST_COMPILE_XLA_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)


def to_numpy(x, dtype=None):
    """`x` (a tensor of any backend, a NumPy array or a nested value) as NumPy.

    `keras.ops.convert_to_numpy` (which detaches PyTorch tensors that
    require gradients and reads bfloat16 ones), then `astype(dtype)` when a
    dtype is given: "float32" reads mixed-precision outputs at full width,
    "float64" keeps a NumPy reference comparison in double precision.
    """
    value = np.asarray(keras.ops.convert_to_numpy(x))
    return value if dtype is None else value.astype(dtype)


def gradients(loss_fn, tensors=(), variables=()):
    """Gradients of the scalar `loss_fn(*tensors)`, as NumPy arrays.

    Differentiates with respect to each of `tensors` (array-likes, passed to
    `loss_fn` as backend tensors) and then each of `variables` (Keras
    variables read inside `loss_fn`, e.g. `layer.trainable_weights`).
    Returns a list in that order: `tf.GradientTape` on TensorFlow,
    `jax.grad` (with the variables' values mapped through a
    `keras.StatelessScope`) on JAX, `torch.autograd.grad` on PyTorch. A
    gradient the backend reports as disconnected is `None` on TensorFlow
    and PyTorch and zeros on JAX.
    """
    variables = list(variables)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(t) for t in tensors]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = loss_fn(*tensors)
        grads = tape.gradient(loss, tensors + [v.value for v in variables])
        return [None if g is None else np.asarray(tf.convert_to_tensor(g)) for g in grads]
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def loss(tensor_values, variable_values):
            with keras.StatelessScope(state_mapping=list(zip(variables, variable_values))):
                return loss_fn(*tensor_values)

        tensor_grads, variable_grads = jax.grad(loss, argnums=(0, 1))(
            [jnp.asarray(t) for t in tensors], [v.value for v in variables]
        )
        return [np.asarray(g) for g in list(tensor_grads) + list(variable_grads)]
    if BACKEND == "torch":
        import torch

        tensors = [
            keras.ops.convert_to_tensor(t).detach().requires_grad_(True) for t in tensors
        ]
        loss = loss_fn(*tensors)
        grads = torch.autograd.grad(
            loss, tensors + [v.value for v in variables], allow_unused=True
        )
        return [None if g is None else g.detach().cpu().numpy() for g in grads]
    pytest.skip(f"no gradient helper for the {BACKEND} backend")


def compiled(fn):
    """`fn` compiled with XLA: `tf.function(jit_compile=True)` or `jax.jit`.

    Variables read inside `fn` are captured as they are when it is traced.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    pytest.skip(f"XLA compilation is TensorFlow's and JAX's, not the {BACKEND} backend's")


def assert_exported_model_serves(model, path, inputs, rtol=1e-5, atol=1e-6):
    """Export `model` as a SavedModel at `path`, load it with TensorFlow and
    check that its `serve` endpoint gives `model`'s outputs for each array of
    `inputs` (shapes the export has not seen included)."""
    tf = pytest.importorskip("tensorflow")
    model.export(str(path), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(path))  # kept: it owns the variables
    for x in inputs:
        served = np.asarray(loaded.serve(tf.constant(x)))
        expected = keras.ops.convert_to_numpy(model(x))
        np.testing.assert_allclose(served, expected, rtol=rtol, atol=atol)


def jax_rnn_masking_known_failure():
    """`xfail` on JAX for a plain `keras.layers.RNN` over an NTM/DNC cell
    with a mask.

    Keras' JAX `rnn` (non-unrolled, with a mask) takes the previous output
    of a masked step from `states[0]`, assuming the cell's first state is
    its output; the NTM and DNC cells' first state is the controller state
    or the memory, so the `jnp.where` fails to broadcast. The `NTM` and
    `DNC` layers carry the output themselves (`MemoryRNN`) and pass; a
    plain `keras.layers.RNN` cannot be fixed from the cell without adding
    a state.
    """
    return pytest.mark.xfail(
        BACKEND == "jax",
        reason="Keras JAX rnn masking assumes states[0] is the previous output; "
        "NTM/DNC cells start with the controller state or the memory "
        "(use the NTM / DNC layers)",
        strict=True,
    )


def run_on_backend(script, backend, timeout=600, cwd=None):
    """Run the Python source `script` in a fresh interpreter on `backend`.

    The backend is global to a process, so tests of another backend's
    end-to-end paths run as a subprocess with `KERAS_BACKEND=backend` and
    the repository on `PYTHONPATH`; `sys.argv[1]` is the backend's name.
    On JAX, XLA compiles with `FAST_COMPILE_XLA_FLAGS` unless `XLA_FLAGS`
    is set. Skips when the backend's package is not installed; fails
    unless the script exits 0 and prints "ok" last. Returns its stdout.
    """
    pytest.importorskip(backend)
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env = dict(
        os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    if backend == "jax":
        env.setdefault("XLA_FLAGS", FAST_COMPILE_XLA_FLAGS)
    result = subprocess.run(
        [sys.executable, "-c", script, backend], env=env, capture_output=True,
        text=True, timeout=timeout, cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok"), result.stdout[-3000:]
    return result.stdout
