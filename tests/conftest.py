"""Shared pytest setup: quiet TensorFlow, seeded runs, the harness on sys.path."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_reset_policy():
    """Seed every test and restore the float32 policy afterwards."""
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
