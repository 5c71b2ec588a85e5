"""Shared pytest setup: quiet TensorFlow, seeded runs, the harness on sys.path.

The backend is TensorFlow unless `KERAS_BACKEND` says otherwise (CI also
runs `tests/layers`, `tests/ops`, `tests/training`,
`tests/test_docstring_examples.py` and the `test_other_backends.py` files of
`tests/models` and `tests/generation` with `KERAS_BACKEND=jax` and
`KERAS_BACKEND=torch`). Tests marked
`@pytest.mark.tf_only(reason=...)` are skipped on other backends.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(__file__))

from backend_utils import FAST_COMPILE_XLA_FLAGS  # noqa: E402

if os.environ["KERAS_BACKEND"] == "jax":
    # XLA reads the flags at its first compile, after this import.
    # The whole JAX layer run passes with them as without.
    os.environ.setdefault("XLA_FLAGS", FAST_COMPILE_XLA_FLAGS)

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Skip `tf_only` tests on other backends, giving the marker's reason."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    for item in items:
        marker = item.get_closest_marker("tf_only")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(
                reason=f"TensorFlow only ({backend} backend): {reason}".rstrip(": ")
            ))


@pytest.fixture(autouse=True)
def _seed_and_reset_policy():
    """Seed every test and restore the float32 policy afterwards."""
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
