"""The NTM layers use keras.ops only: they train on the JAX backend too."""

import os
import pathlib
import subprocess
import sys

import pytest

_JAX_SCRIPT = """
import numpy as np, keras
from keras_attention.layers import NTM
assert keras.backend.backend() == "jax"
x = np.random.default_rng(0).uniform(size=(3, 5, 6)).astype("float32")
model = keras.Sequential([keras.Input((None, 6)), NTM(8, 7, 4, output_dim=2, return_sequences=True)])
model.compile("adam", "mse", jit_compile=True)
loss = model.fit(x, np.zeros((3, 5, 2), "float32"), epochs=1, verbose=0).history["loss"][0]
assert np.isfinite(loss)
print("ok")
"""


def test_runs_on_the_jax_backend():
    pytest.importorskip("jax")
    root = str(pathlib.Path(__file__).resolve().parents[3])
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
