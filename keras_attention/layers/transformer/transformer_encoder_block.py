"""Transformer encoder block: self-attention and feed-forward sub-layers."""

import keras

from keras_attention.layers.transformer import block_components as parts
from keras_attention.layers.transformer.feed_forward import FeedForward
from keras_attention.layers.transformer.block_components import serialize_activation
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_float
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rate


@keras.saving.register_keras_serializable(package="keras_attention")
class TransformerEncoderBlock(keras.layers.Layer):
    """Transformer encoder block (Vaswani et al. 2017, section 3.1).

    Two sub-layers, each wrapped in a residual connection with normalization:
    multi-head self-attention, then a position-wise feed-forward network.
    Post-LN (the paper's, `norm_first=False`) computes
    `x = Norm(x + Dropout(Sublayer(x)))`; pre-LN (`norm_first=True`)
    computes `x = x + Dropout(Sublayer(Norm(x)))`. `dropout` is the paper's
    residual dropout on each sub-layer output; `attention_dropout` drops
    attention weights inside the attention layer.

    The positional scheme is passed into attention: `"rotary"` rotates
    queries and keys (RoPE), `"relative"` adds a learned T5 relative-position
    bias, `"alibi"` adds ALiBi's linear distance penalty; `None` leaves
    positions to the embeddings. `attention_kernel` picks the attention layer
    by name from `block_components.ATTENTION_KERNELS`, so efficient kernels
    plug in without a new block.

    Shape letters: B batch, T sequence length, E hidden size (the input's last
    axis), H heads.

    Padding: an implicit Keras mask on `inputs` (e.g. from
    `TokenAndPositionEmbedding(mask_zero=True)`) or an explicit
    `padding_mask` masks padded keys; the block propagates the mask.

    Args:
        num_heads: number of attention heads H.
        intermediate_dim: width of the feed-forward hidden layer.
        key_dim: size of each attention head; defaults to `E // num_heads`
            (then E must be divisible by `num_heads`).
        num_key_value_heads: key/value heads for grouped-query attention;
            defaults to `num_heads`.
        dropout: residual dropout rate on each sub-layer output, in [0, 1).
        attention_dropout: dropout rate on the attention weights; defaults to
            `dropout` when `None`.
        activation: feed-forward activation, any Keras activation or a gated
            variant (`"swiglu"`, `"geglu"`, ...), see `FeedForward`.
        norm_first: pre-LN when `True`, the paper's post-LN when `False`.
        layer_norm_epsilon: epsilon of the normalization layers.
        normalization: `"layer_norm"` or `"rms_norm"`.
        position_scheme: `None`, `"rotary"`, `"relative"` or `"alibi"`.
        attention_kernel: name of the attention kernel, `"dot_product"` by
            default.
        kernel_initializer: initializer of all projection kernels.
        bias_initializer: initializer of all projection biases.

    Call arguments:
        inputs: `(B, T, E)` tensor.
        padding_mask: optional `(B, T)` boolean mask, `True` for real tokens.
            Defaults to the implicit Keras mask of `inputs`.
        attention_mask: optional `(B, T, T)` boolean mask.
        use_causal_mask: whether to apply a causal mask (for decoder-only
            stacks built from encoder blocks).
        return_attention_scores: whether to also return the `(B, H, T, T)`
            attention weights.
        training: whether dropout is active.

    Returns:
        `(B, T, E)` tensor, or `(output, scores)` with
        `return_attention_scores=True`.

    Raises:
        ValueError: on invalid arguments (non-positive sizes, rates outside
            [0, 1), unknown `normalization`, `position_scheme` or
            `attention_kernel`), or a hidden size not divisible by
            `num_heads` when `key_dim` is not given.

    Example:

    ```python
    import numpy as np
    from keras_attention.layers import TransformerEncoderBlock
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32,
                                    position_scheme="rotary")
    x = np.random.rand(2, 6, 16).astype("float32")
    y = block(x, padding_mask=np.array([[1] * 6, [1] * 4 + [0] * 2], bool))
    tuple(y.shape)  # (2, 6, 16)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", section 3.1.
        Xiong et al., 2020, "On Layer Normalization in the Transformer
        Architecture" (pre-LN).
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        key_dim=None,
        num_key_value_heads=None,
        dropout=0.0,
        attention_dropout=None,
        activation="relu",
        norm_first=False,
        layer_norm_epsilon=1e-5,
        normalization="layer_norm",
        position_scheme=None,
        attention_kernel="dot_product",
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int(num_heads, "num_heads")
        self.intermediate_dim = check_positive_int(intermediate_dim, "intermediate_dim")
        self.key_dim = check_positive_int(key_dim, "key_dim", allow_none=True)
        self.num_key_value_heads = check_positive_int(
            num_key_value_heads, "num_key_value_heads", allow_none=True
        )
        self.dropout = check_rate(dropout, "dropout")
        self.attention_dropout = (
            None
            if attention_dropout is None
            else check_rate(attention_dropout, "attention_dropout")
        )
        self.activation = activation
        self.norm_first = check_bool(norm_first, "norm_first")
        self.layer_norm_epsilon = check_positive_float(
            layer_norm_epsilon, "layer_norm_epsilon"
        )
        parts.check_block_arguments(normalization, position_scheme, attention_kernel)
        self.normalization = normalization
        self.position_scheme = position_scheme
        self.attention_kernel = attention_kernel
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        # Fail at construction on a bad activation, not at build.
        FeedForward(intermediate_dim=self.intermediate_dim, activation=activation)
        self.supports_masking = True

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                "Received an invalid value for argument `inputs`, expected a "
                "rank-3 tensor (batch, length, hidden_dim) with a known last "
                f"axis. Received: inputs.shape={input_shape}"
            )
        hidden_dim = input_shape[-1]
        key_dim = parts.resolve_key_dim(self.key_dim, hidden_dim, self.num_heads)
        dtype = self.dtype_policy
        attention_dropout = (
            self.dropout if self.attention_dropout is None else self.attention_dropout
        )
        self.self_attention_layer_norm = parts.make_norm(
            self.normalization, self.layer_norm_epsilon, dtype,
            "self_attention_layer_norm",
        )
        self.self_attention_layer_norm.build(input_shape)
        self.self_attention = parts.make_attention(
            self.attention_kernel, self.num_heads, key_dim,
            self.num_key_value_heads, attention_dropout,
            self.position_scheme == "rotary", self.kernel_initializer,
            self.bias_initializer, dtype, "self_attention",
        )
        self.self_attention.build(input_shape, input_shape)
        self.position_bias = parts.make_position_bias(
            self.position_scheme, self.num_heads, True, dtype, "position_bias"
        )
        if self.position_bias is not None and not self.position_bias.built:
            self.position_bias.build(input_shape, input_shape)
        self.self_attention_dropout = keras.layers.Dropout(
            self.dropout, dtype=dtype, name="self_attention_dropout"
        )
        self.feedforward_layer_norm = parts.make_norm(
            self.normalization, self.layer_norm_epsilon, dtype,
            "feedforward_layer_norm",
        )
        self.feedforward_layer_norm.build(input_shape)
        self.feedforward = FeedForward(
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            dtype=dtype,
            name="feedforward",
        )
        self.feedforward.build(input_shape)
        self.feedforward_dropout = keras.layers.Dropout(
            self.dropout, dtype=dtype, name="feedforward_dropout"
        )
        self.built = True

    def _residual(self, x, sublayer, norm, dropout, training):
        """Apply `sublayer` with residual, dropout and pre/post norm."""
        residual = x
        if self.norm_first:
            x = norm(x)
        x, extra = sublayer(x)
        x = dropout(x, training=training)
        x = x + residual
        if not self.norm_first:
            x = norm(x)
        return x, extra

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        mask=None,
    ):
        if padding_mask is None:
            padding_mask = mask
        bias = None
        if self.position_bias is not None:
            bias = self.position_bias(inputs, inputs)  # (1, H, T, T)

        def attend(x):
            result = self.self_attention(
                x,
                x,
                query_mask=padding_mask,
                value_mask=padding_mask,
                attention_mask=attention_mask,
                use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores,
                attention_bias=bias,
                training=training,
            )
            return result if return_attention_scores else (result, None)

        x, scores = self._residual(
            inputs, attend, self.self_attention_layer_norm,
            self.self_attention_dropout, training,
        )
        x, _ = self._residual(
            x,
            lambda h: (self.feedforward(h, training=training), None),
            self.feedforward_layer_norm,
            self.feedforward_dropout,
            training,
        )
        if return_attention_scores:
            return x, scores
        return x

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs, return_attention_scores=False, **kwargs):
        output = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        batch, length = inputs.shape[0], inputs.shape[1]
        scores = keras.KerasTensor(
            (batch, self.num_heads, length, length), dtype=self.compute_dtype
        )
        return output, scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "key_dim": self.key_dim,
                "num_key_value_heads": self.num_key_value_heads,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation": serialize_activation(self.activation),
                "norm_first": self.norm_first,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "normalization": self.normalization,
                "position_scheme": self.position_scheme,
                "attention_kernel": self.attention_kernel,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
