"""Per-token projections computed as one 2-D matrix product."""

import math

import keras
from keras import ops

from keras_attention.ops.dot_layout import canonical_matmul
from keras_attention.ops.dot_layout import in_xla_context


def _split_equation(equation):
    """`(input, kernel, output)` letters of an `"ab,bc->ac"` equation, or
    `None` when the equation has ellipses or another shape."""
    if "..." in equation or equation.count("->") != 1:
        return None
    inputs, output = equation.split("->")
    if inputs.count(",") != 1:
        return None
    lhs, kernel = inputs.split(",")
    return lhs, kernel, output


def matmul_layout(equation):
    """`(leading, contracted)` axis counts when `equation` is a per-token map.

    A per-token map contracts the input's trailing axes with the kernel's
    leading axes (same letters, same order) and appends the kernel's other
    axes to the input's leading ones, e.g. `"btf,fnh->btnh"` (1 contracted
    axis) or `"btnh,nhz->btz"` (2). Such an einsum is one matrix product of
    the input flattened to `(tokens, prod(contracted))` and the kernel
    flattened to `(prod(contracted), prod(rest))`. Returns `None` for any
    other equation.

    Example:

    ```python
    from keras_attention.layers.attention.token_projection import matmul_layout
    matmul_layout("btf,fnh->btnh")  # (2, 1)
    matmul_layout("btnh,nhz->btz")  # (2, 2)
    matmul_layout("abc,cd->abd")    # (2, 1)
    matmul_layout("bf,hf->bh")      # None: the kernel's last axis is contracted
    ```
    """
    parts = _split_equation(equation)
    if parts is None:
        return None
    lhs, kernel, output = parts
    for contracted in range(1, min(len(lhs), len(kernel)) + 1):
        leading, shared = lhs[: len(lhs) - contracted], lhs[len(lhs) - contracted :]
        rest = kernel[contracted:]
        if (
            kernel[:contracted] == shared
            and output == leading + rest
            and leading
            and len(set(lhs + kernel)) == len(lhs + rest)
        ):
            return len(leading), contracted
    return None


@keras.saving.register_keras_serializable(package="keras_attention")
class TokenProjection(keras.layers.EinsumDense):
    """`keras.layers.EinsumDense` whose per-token maps run as one matmul.

    Same weights, configuration and results as `EinsumDense`; only how a
    per-token equation such as `"btf,fnh->btnh"` is computed differs. On the
    TensorFlow backend `ops.einsum` lowers such an equation to a batched
    matrix product whose kernel is broadcast over the batch, and the
    kernel's gradient is then formed as `B` per-example products summed
    afterwards: a `(B, F, H * D)` intermediate and `B` small products
    instead of one large one. Reshaping the input to `(B * T, F)` and the
    kernel to `(F, H * D)` gives one matrix product forward and backward
    (the kernel gradient is a single `(F, B*T) x (B*T, H*D)` product).

    The 2-D product is used in training calls (`training=True`, as in
    `fit`); other calls compute `EinsumDense`'s einsum, which is as fast or
    faster without a backward pass. Equations that are not per-token maps
    (see `matmul_layout`), and
    quantized layers (Keras routes them to `quantized_call`), keep
    `EinsumDense`'s computation; `quantize` works as for `EinsumDense`. The kernel is read through the `kernel`
    property, so LoRA-enabled layers include their low-rank update.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers.attention.token_projection import TokenProjection
    layer = TokenProjection("btf,fnh->btnh", output_shape=(None, 2, 4),
                            bias_axes="nh")
    y = layer(np.random.rand(3, 5, 6).astype("float32"))
    tuple(y.shape)  # (3, 5, 2, 4)
    ```
    """

    def build(self, input_shape):
        super().build(input_shape)
        self._matmul_layout = matmul_layout(self.equation)

    def quantize(self, mode=None, type_check=True, config=None):
        # Keras refuses to quantize EinsumDense subclasses unless told
        # otherwise; this one has EinsumDense's weights and quantized call,
        # so `model.quantize(...)` treats it as an EinsumDense.
        del type_check
        return super().quantize(mode, type_check=False, config=config)

    def call(self, inputs, training=None):
        layout = getattr(self, "_matmul_layout", None)
        if layout is None or not training:
            # Outside training the einsum is as fast or faster (TensorFlow
            # graph mode runs the batched product with more parallelism at
            # batch 1); the 2-D product pays off in the backward pass.
            return super().call(inputs, training=training)
        leading, contracted = layout
        kernel = self.kernel
        kernel_shape = tuple(kernel.shape)
        rows = math.prod(kernel_shape[:contracted])
        columns = math.prod(kernel_shape[contracted:])
        shape = ops.shape(inputs)
        x = ops.reshape(inputs, (-1, rows))  # (tokens, contracted)
        x = canonical_matmul(x, ops.reshape(kernel, (rows, columns)))  # (tokens, rest)
        bias = self.bias
        if bias is not None and math.prod(bias.shape) == columns:
            # A bias over every output axis is added as a vector to the 2-D
            # product: its gradient is then one column sum (XLA:CPU turns
            # the sum over (B, T) of a (B, T, H, D) tensor into a slow
            # windowed reduction).
            x = ops.add(x, ops.reshape(bias, (columns,)))
            bias = None
        x = ops.reshape(x, (*shape[:leading], *kernel_shape[contracted:]))
        if bias is not None:
            x = ops.add(x, bias)
        if self.activation is not None:
            x = self.activation(x)
        return x


@keras.saving.register_keras_serializable(package="keras_attention")
class TokenDense(keras.layers.Dense):
    """`keras.layers.Dense` whose training product runs as one 2-D matmul
    with the kernel gradient as a canonical dot under XLA.

    Same weights, configuration and results as `Dense`. In training calls
    compiled by XLA (`fit` with `jit_compile=True` on TensorFlow), the
    input is reshaped to `(tokens, features)` and multiplied by
    `keras_attention.ops.dot_layout.canonical_matmul`: XLA:CPU runs the
    kernel gradient `dW = X^T dY`, a sum over every token, below its
    canonical rate, and the copied transpose of the smaller operand makes it
    a canonical product. Other calls (inference, no XLA, other backends)
    and quantized layers (Keras routes them to `quantized_call`) are
    `Dense`'s own. The kernel is read through the `kernel` property, so
    LoRA-enabled layers include their low-rank update.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers.attention.token_projection import TokenDense
    layer = TokenDense(4, activation="relu")
    y = layer(np.random.rand(3, 5, 6).astype("float32"), training=True)
    tuple(y.shape)  # (3, 5, 4)
    ```
    """

    def quantize(self, mode=None, type_check=True, config=None):
        # As for TokenProjection: Keras refuses to quantize Dense subclasses
        # unless told otherwise; this one has Dense's weights and quantized
        # call, so `model.quantize(...)` treats it as a Dense.
        del type_check
        return super().quantize(mode, type_check=False, config=config)

    def call(self, inputs, training=None):
        if not training or not in_xla_context() or len(inputs.shape) < 2:
            return super().call(inputs, training=training)
        shape = ops.shape(inputs)
        x = ops.reshape(inputs, (-1, inputs.shape[-1]))  # (tokens, features)
        x = canonical_matmul(x, self.kernel)  # (tokens, units)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        x = ops.reshape(x, (*shape[:-1], self.units))
        if self.activation is not None:
            x = self.activation(x)
        return x
