"""Command-line helpers shared by the example scripts and the benchmarks."""

import argparse
import ast


def kernel_option(text):
    """`argparse` type of `--kernel-option NAME=VALUE`: `(name, value)`.

    The value is a Python literal (`32`, `0.5`, `True`) or else the string
    itself, so every option of an attention kernel's layer can be given.

    Raises:
        argparse.ArgumentTypeError: when `text` is not `NAME=VALUE` with an
            identifier as the name.

    Example:

    ```python
    from keras_attention.utils.command_line import kernel_option
    kernel_option("window_size=32")  # ('window_size', 32)
    ```
    """
    name, equals, value = text.partition("=")
    if not equals or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE (e.g. window_size=32), received {text!r}")
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass
    return name.strip(), value
