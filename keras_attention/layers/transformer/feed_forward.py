"""Position-wise feed-forward network of a Transformer block.

Shape letters: B batch, T sequence length, E input features, F
`intermediate_dim`, O output features (`hidden_dim`, default E).
"""

import keras
from keras import ops

from keras_attention.layers.attention.token_projection import TokenDense
from keras_attention.utils.initializers import clone_initializer
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rate

# Gated linear unit variants (Shazeer 2020, eqs. 5-6): name -> activation
# applied to the gate projection `xW`; the other projection `xV` is linear.
GATED_ACTIVATIONS = {
    "glu": "sigmoid",
    "bilinear": "linear",
    "reglu": "relu",
    "geglu": "gelu",
    "swiglu": "silu",
}


def _resolve_activation(activation):
    """Return `(activation_fn, gated)` or raise a Keras-style ValueError."""
    if isinstance(activation, str) and activation in GATED_ACTIVATIONS:
        return keras.activations.get(GATED_ACTIVATIONS[activation]), True
    try:
        fn = keras.activations.get(activation)
    except (ValueError, TypeError):
        fn = None
    if fn is None or not callable(fn):
        raise ValueError(
            "Received an invalid value for argument `activation`, expected a "
            "Keras activation (name or callable) or a gated variant, one of "
            f"{sorted(GATED_ACTIVATIONS)}. Received: activation={activation!r}"
        )
    return fn, False


@keras.saving.register_keras_serializable(package="keras_attention")
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward network, plain or gated (GLU variants).

    The same two-layer network is applied to every position independently.
    With a plain activation `f` (Vaswani et al. 2017, eq. 2, where `f` is
    ReLU):

        FFN(x) = f(x W1 + b1) W2 + b2

    With a gated variant (Shazeer 2020), a third projection `V` gates the
    hidden units:

        FFN(x) = (g(x W + b) * (x V + c)) W2 + b2

    `activation` selects both: any Keras activation (`"relu"`, `"gelu"`,
    `"silu"`, a callable, ...) gives the plain network; one of the variant
    names gives the gated one with gate activation `g`: `"glu"` (sigmoid),
    `"bilinear"` (identity), `"reglu"` (ReLU), `"geglu"` (GELU), `"swiglu"`
    (SiLU / Swish-1). The gated network has three weight matrices; to keep the
    parameter count of a plain network with width F, Shazeer uses
    `intermediate_dim = 2 F / 3`.

    Dropout: `dropout` is applied inside the network, to the hidden units
    right after the activation (after the gating product for gated variants),
    as tensor2tensor's `relu_dropout`. The paper's residual dropout (section
    5.4, on each sub-layer output before the residual add) is the job of the
    enclosing block, not of this layer; with `dropout=0` this layer is exactly
    the formula above.

    Sub-layers: `intermediate_dense` (E -> F; the activated projection in the
    plain network, the linear `V` projection in the gated one), `gate_dense`
    (E -> F, gated variants only, the `W` projection), `dropout` and
    `output_dense` (F -> O). A Keras mask on the input passes through.

    Args:
        intermediate_dim: int, width F of the hidden layer.
        hidden_dim: int or `None`, output width O. `None` (default) keeps the
            input width E.
        activation: a Keras activation (name or callable) for the plain
            network, or a gated variant name: `"glu"`, `"bilinear"`,
            `"reglu"`, `"geglu"`, `"swiglu"`. Defaults to `"relu"`.
        dropout: float in [0, 1), dropout rate on the hidden units.
        use_bias: bool, whether every projection has a bias.
        kernel_initializer: initializer of the projection kernels. Each
            sub-layer gets its own copy; a seeded initializer's seed is
            offset by the sub-layer's index so the projections differ.
        bias_initializer: initializer of the biases.

    Call arguments:
        inputs: `(B, ..., E)` tensor.
        training: Python bool, whether dropout is active.

    Returns:
        `(B, ..., O)` tensor in the layer's compute dtype.

    Raises:
        ValueError: if `intermediate_dim` or `hidden_dim` is not a positive
            integer, `activation` is unknown, `dropout` is outside [0, 1), or
            the input's last axis is unknown at build time.
        TypeError: if `use_bias` is not a bool.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import FeedForward
    ffn = FeedForward(intermediate_dim=16, activation="swiglu")
    y = ffn(np.ones((2, 3, 8), "float32"))
    tuple(y.shape)  # (2, 3, 8)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", NeurIPS 2017,
          section 3.3.
        - Shazeer, "GLU Variants Improve Transformer", arXiv:2002.05202, 2020.
        - Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)",
          arXiv:1606.08415, 2016.
    """

    def __init__(
        self,
        intermediate_dim,
        hidden_dim=None,
        activation="relu",
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = check_positive_int(
            intermediate_dim, "intermediate_dim"
        )
        self.hidden_dim = check_positive_int(
            hidden_dim, "hidden_dim", allow_none=True
        )
        self._activation_fn, self._gated = _resolve_activation(activation)
        # The public attribute keeps what was passed (a name or a callable).
        self.activation = activation
        self.dropout = check_rate(dropout, "dropout")
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    @property
    def gated(self):
        """Whether the network is a gated (GLU) variant."""
        return self._gated

    def _dense(self, units, name, offset):
        return TokenDense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer, offset),
            bias_initializer=clone_initializer(self.bias_initializer, offset),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected a "
                "tensor of rank >= 2 with a known last axis (features). "
                f"Received: inputs.shape={input_shape}"
            )
        feature_dim = input_shape[-1]
        output_dim = self.hidden_dim or feature_dim
        hidden_shape = input_shape[:-1] + (self.intermediate_dim,)

        self.intermediate_dense = self._dense(
            self.intermediate_dim, "intermediate_dense", 0
        )
        self.intermediate_dense.build(input_shape)
        if self._gated:
            self.gate_dense = self._dense(self.intermediate_dim, "gate_dense", 1)
            self.gate_dense.build(input_shape)
        else:
            self.gate_dense = None
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )
        self.dropout_layer.build(hidden_shape)
        self.output_dense = self._dense(output_dim, "output_dense", 2)
        self.output_dense.build(hidden_shape)
        self.built = True

    def call(self, inputs, training=None):
        inputs = ops.cast(inputs, self.compute_dtype)
        hidden = self.intermediate_dense(inputs)  # (B, ..., F)
        if self._gated:
            gate = self._activation_fn(self.gate_dense(inputs))  # (B, ..., F)
            hidden = gate * hidden  # (B, ..., F)
        else:
            hidden = self._activation_fn(hidden)  # (B, ..., F)
        hidden = self.dropout_layer(hidden, training=training)
        return self.output_dense(hidden)  # (B, ..., O)

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        return input_shape[:-1] + (self.hidden_dim or input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        activation = self.activation
        if not isinstance(activation, str):
            activation = keras.activations.serialize(self._activation_fn)
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "hidden_dim": self.hidden_dim,
                "activation": activation,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
