"""`--kernel-option NAME=VALUE` parsing shared by the examples and benchmarks."""

import argparse

import pytest

from keras_attention.utils.command_line import kernel_option


@pytest.mark.parametrize("text,expected", [
    ("window_size=32", ("window_size", 32)),
    ("scale=0.5", ("scale", 0.5)),
    ("redraw_features=True", ("redraw_features", True)),
    ("projection_sharing=key_value", ("projection_sharing", "key_value")),
    (" block_size =4", ("block_size", 4)),
])
def test_values_are_python_literals_or_strings(text, expected):
    assert kernel_option(text) == expected


@pytest.mark.parametrize("text", ["window_size", "=3", "2x=3"])
def test_malformed_options_are_argparse_errors(text):
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected NAME=VALUE \(e\.g\. "
                       rf"window_size=32\), received '{text}'"):
        kernel_option(text)
