"""What the encoder and decoder blocks share: arguments, sub-layer factories,
the residual wrapper and the config."""

import keras

from keras_attention.layers.transformer import block_components as parts
from keras_attention.layers.transformer.block_components import serialize_activation
from keras_attention.layers.transformer.feed_forward import FeedForward
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_float
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rate


class TransformerBlockBase(keras.layers.Layer):
    """Base of `TransformerEncoderBlock` and `TransformerDecoderBlock`.

    Holds the shared constructor arguments (documented on the public
    blocks), validates them, builds the normalization, attention and
    feed-forward sub-layers and applies one residual sub-layer with pre- or
    post-normalization. Not a public layer.
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
        attention_implementation="auto",
        attention_kernel_options=None,
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
        self.attention_kernel_options = parts.check_attention_kernel_options(
            attention_kernel_options, attention_kernel
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self._check_attention_dropout(attention_kernel, "attention_kernel")
        self.attention_implementation = parts.check_attention_implementation(
            attention_implementation, attention_kernel, self._attention_dropout_rate()
        )
        # Fail at construction on a bad activation, not at build.
        FeedForward(intermediate_dim=self.intermediate_dim, activation=activation)
        self.supports_masking = True

    @staticmethod
    def _check_sequence_shape(shape, name):
        shape = tuple(shape)
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(
                f"Received an invalid value for argument `{name}`, expected a "
                "rank-3 tensor (batch, length, hidden_dim) with a known last "
                f"axis. Received: {name}.shape={shape}"
            )
        return shape

    def _check_attention_dropout(self, kernel, argument):
        """Refuse a non-zero `attention_dropout` for a kernel (named by the
        constructor argument `argument`) that forms no attention weights."""
        if self.attention_dropout and not self._kernel_forms_attention_weights(kernel):
            raise ValueError(
                "Received incompatible arguments `attention_dropout` and "
                f"`{argument}`: the {kernel!r} kernel forms no attention weights "
                "to drop, expected attention_dropout None (then 0 for this "
                "kernel) or 0. Received: "
                f"attention_dropout={self.attention_dropout!r}, {argument}={kernel!r}"
            )

    def _attention_dropout_rate(self, kernel=None):
        """`attention_dropout`, else `dropout`, or 0 for a kernel that forms
        no attention weights (`forms_attention_weights = False`); `kernel`
        defaults to the block's `attention_kernel`."""
        if self.attention_dropout is not None:
            return self.attention_dropout
        return self.dropout if self._kernel_forms_attention_weights(kernel) else 0.0

    def _kernel_forms_attention_weights(self, kernel=None):
        layer_cls = parts.ATTENTION_KERNELS[kernel or self.attention_kernel]
        return getattr(layer_cls, "forms_attention_weights", True)

    def _attention(self, key_dim, use_rotary, name, kernel=None):
        """An attention sub-layer: the block's `attention_kernel` with its
        options and implementation, or another registered `kernel` with its
        layer's defaults."""
        own = kernel is None or kernel == self.attention_kernel
        kernel = self.attention_kernel if kernel is None else kernel
        return parts.make_attention(
            kernel, self.num_heads, key_dim, self.num_key_value_heads,
            self._attention_dropout_rate(kernel), use_rotary, self.kernel_initializer,
            self.bias_initializer, self.dtype_policy, name,
            self.attention_implementation if own else "auto",
            self.attention_kernel_options if own else None,
        )

    def _norm(self, name, shape):
        norm = parts.make_norm(
            self.normalization, self.layer_norm_epsilon, self.dtype_policy, name
        )
        norm.build(shape)
        return norm

    def _dropout(self, name):
        return keras.layers.Dropout(self.dropout, dtype=self.dtype_policy, name=name)

    def _build_self_attention(self, shape, bidirectional):
        """Self-attention sub-layers and the positional bias, if any."""
        key_dim = parts.resolve_key_dim(self.key_dim, shape[-1], self.num_heads)
        self.self_attention_layer_norm = self._norm("self_attention_layer_norm", shape)
        self.self_attention = self._attention(
            key_dim, self.position_scheme == "rotary", "self_attention"
        )
        self.self_attention.build(shape, shape)
        self.position_bias = parts.make_position_bias(
            self.position_scheme, self.num_heads, bidirectional, self.dtype_policy,
            "position_bias",
        )
        if self.position_bias is not None and not self.position_bias.built:
            self.position_bias.build(shape, shape)
        self.self_attention_dropout = self._dropout("self_attention_dropout")
        return key_dim

    def _build_feedforward(self, shape):
        self.feedforward_layer_norm = self._norm("feedforward_layer_norm", shape)
        self.feedforward = FeedForward(
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            dtype=self.dtype_policy,
            name="feedforward",
        )
        self.feedforward.build(shape)
        self.feedforward_dropout = self._dropout("feedforward_dropout")

    def _residual(self, x, sublayer, norm, dropout, training):
        """`Norm(x + Dropout(f(x)))` (post-LN) or `x + Dropout(f(Norm(x)))`.

        `sublayer` returns `(output, extra)`; `extra` (scores, caches) is
        passed back untouched.
        """
        residual = x
        if self.norm_first:
            x = norm(x)
        x, extra = sublayer(x)
        x = dropout(x, training=training)
        x = x + residual
        if not self.norm_first:
            x = norm(x)
        return x, extra

    def _feedforward_residual(self, x, training):
        x, _ = self._residual(
            x,
            lambda h: (self.feedforward(h, training=training), None),
            self.feedforward_layer_norm,
            self.feedforward_dropout,
            training,
        )
        return x

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
                "attention_kernel_options": dict(self.attention_kernel_options) or None,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "attention_implementation": self.attention_implementation,
            }
        )
        return config
