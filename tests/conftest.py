"""Shared pytest setup: quiet TensorFlow, seeded runs, the harness on sys.path.

The backend is TensorFlow unless `KERAS_BACKEND` says otherwise (CI also
runs `tests/layers` with `KERAS_BACKEND=jax` and `KERAS_BACKEND=torch`). Tests marked
`@pytest.mark.tf_only(reason=...)` are skipped on other backends.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ["KERAS_BACKEND"] == "jax":
    # Test-sized programs: XLA:CPU's LLVM optimisation costs more than the
    # runs (test_big_bird_attention.py on 2 workers: 52 s -> 35 s). The
    # whole JAX layer run passes with it as without.
    os.environ.setdefault(
        "XLA_FLAGS",
        "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
    )
sys.path.insert(0, os.path.dirname(__file__))

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
