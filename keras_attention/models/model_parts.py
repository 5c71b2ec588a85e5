"""Shared pieces of the model builders: checks, embeddings, block stacks, heads.

Every builder names its layers the same way, and `keras_attention.generation`
finds the parts of a model by these names:

- `"embedding"` (one shared `TokenAndPositionEmbedding`), or
  `"source_embedding"` / `"target_embedding"` in a translator with separate
  embeddings;
- `"encoder_block_{i}"` / `"decoder_block_{i}"` (`i` from 0);
- `"encoder_final_norm"` / `"decoder_final_norm"` (pre-LN models only; the
  last residual stream of a pre-LN stack is never normalized by a block);
- `"lm_head"`, a `Dense` output projection when the output embedding is not
  tied (tied logits reuse the embedding table: `embedding.token_embedding(x,
  reverse=True)`).

Shape letters: B batch, T sequence length, E `hidden_dim`, V vocabulary size.
"""

import inspect

import keras

from keras_attention.layers.position import TokenAndPositionEmbedding
from keras_attention.layers.transformer import TransformerDecoderBlock
from keras_attention.layers.transformer import TransformerEncoderBlock
from keras_attention.layers.transformer import block_components
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_divisible
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_float
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rate

POSITION_ENCODINGS = ("learned", "sinusoidal")

# Attention kernels the builders offer only with an option, and why.
# Linformer's sequence projections need a static key length, while the
# builders take token ids of any length: its `sequence_length` option (the
# longest key length) must come in `attention_kernel_options`.
_BUILDER_REQUIRED_OPTIONS = {
    "linformer": (
        "sequence_length",
        "its sequence projections need a static key length; pass "
        "attention_kernel_options={'sequence_length': ...}",
    ),
}
# Kernels that take no additive `attention_bias`, so no "relative" or
# "alibi" position scheme (rotary embeddings act on the queries and keys).
_KERNELS_WITHOUT_BIAS = ("performer", "linformer")
# Kernels a causal language model can use: causal attention with a
# self-attention KV cache for generation (Linformer's projections mix all
# positions, so it has neither).
CAUSAL_DECODING_KERNELS = ("dot_product", "performer", "local", "big_bird")


def builder_attention_kernels():
    """The attention kernels the model builders offer without kernel options
    (registered, usable; `"linformer"` needs its `sequence_length`)."""
    return tuple(
        k for k in block_components.ATTENTION_KERNELS if k not in _BUILDER_REQUIRED_OPTIONS
    )


def kernel_takes(attention_kernel, option):
    """Whether the layer of `attention_kernel` has the constructor argument
    `option` (e.g. `"sequence_length"`, `"pattern_seed"`)."""
    layer_cls = block_components.ATTENTION_KERNELS[attention_kernel]
    return option in inspect.signature(layer_cls.__init__).parameters


def with_sequence_length(attention_kernel, options, sequence_length):
    """`options` (a dict or `None`) with `sequence_length` as the kernel's
    own `sequence_length` option, for a kernel whose layer is built for a
    longest length (`"linformer"`'s projections, `"big_bird"`'s block
    pattern for inputs of unknown length) and options that do not set it;
    what a caller that knows the padded length (a builder, a HyperModel, an
    example) passes. `sequence_length=None` adds nothing.

    Returns:
        A new dict, or `None` when it is empty.
    """
    merged = dict(options or {})
    if sequence_length is not None and kernel_takes(attention_kernel, "sequence_length"):
        merged.setdefault("sequence_length", sequence_length)
    return merged or None


def kernel_position_schemes(attention_kernel):
    """The `position_scheme` values `attention_kernel` works with."""
    if attention_kernel in _KERNELS_WITHOUT_BIAS:
        return (None, "rotary")
    return block_components.POSITION_SCHEMES


def check_attention_kernel(attention_kernel, position_scheme, attention_kernel_options=None,
                           causal_decoding=False, argument="attention_kernel"):
    """Validate a builder's `attention_kernel`, its `attention_kernel_options`
    and its `position_scheme` (with `causal_decoding`, a kernel of
    `CAUSAL_DECODING_KERNELS`). Errors name `argument` and
    `<argument>_options` (e.g. `decoder_attention_kernel`).

    Returns:
        The options as a new dict, or `None` without options.

    Raises:
        ValueError: on a kernel that is not registered, `"linformer"`
            without its `sequence_length` option, options the kernel's
            layer refuses (see `check_attention_kernel_options`), or a
            position scheme that needs an additive bias the kernel does not
            take (`"performer"` with `"relative"` / `"alibi"`).
        TypeError: on options that are not a dict.
    """
    options_argument = f"{argument}_options"
    check_one_of(attention_kernel, argument, tuple(block_components.ATTENTION_KERNELS))
    if causal_decoding and attention_kernel not in CAUSAL_DECODING_KERNELS:
        raise ValueError(
            f"Received an invalid value for argument `{argument}`, expected "
            f"one of {list(CAUSAL_DECODING_KERNELS)} (causal attention with a KV "
            "cache for generation). Received: "
            f"{argument}={attention_kernel!r}"
        )
    options = block_components.check_attention_kernel_options(
        attention_kernel_options, attention_kernel, options_argument
    )
    required = _BUILDER_REQUIRED_OPTIONS.get(attention_kernel)
    if required is not None and required[0] not in options:
        raise ValueError(
            f"Received an invalid value for argument `{argument}`, expected "
            f"one of {list(builder_attention_kernels())}, or {attention_kernel!r} "
            f"with its {required[0]!r} option ({required[1]}). "
            f"Received: {argument}={attention_kernel!r}, "
            f"{options_argument}={attention_kernel_options!r}"
        )
    if position_scheme not in kernel_position_schemes(attention_kernel):
        raise ValueError(
            f"Received incompatible arguments `{argument}` and "
            f"`position_scheme`: the {attention_kernel!r} kernel takes no additive "
            "attention bias, expected position_scheme None or 'rotary'. "
            f"Received: {argument}={attention_kernel!r}, "
            f"position_scheme={position_scheme!r}"
        )
    return options or None


def check_transformer_arguments(
    vocabulary_size,
    sequence_length,
    num_layers,
    hidden_dim,
    num_heads,
    intermediate_dim,
    dropout,
    norm_first,
    layer_norm_epsilon,
    normalization,
    position_encoding,
    position_scheme,
    num_key_value_heads,
):
    """Validate the arguments every Transformer builder shares.

    Raises:
        ValueError: on a non-positive size, a dropout rate outside `[0, 1)`,
            `hidden_dim` not a multiple of `num_heads`, `num_heads` not a
            multiple of `num_key_value_heads`, or an unknown option.
        TypeError: if `norm_first` is not a bool.
    """
    check_positive_int(vocabulary_size, "vocabulary_size")
    check_positive_int(sequence_length, "sequence_length")
    check_positive_int(num_layers, "num_layers")
    check_positive_int(hidden_dim, "hidden_dim")
    check_positive_int(num_heads, "num_heads")
    check_positive_int(intermediate_dim, "intermediate_dim")
    check_divisible(hidden_dim, "hidden_dim", num_heads, "num_heads")
    check_positive_int(num_key_value_heads, "num_key_value_heads", allow_none=True)
    if num_key_value_heads is not None:
        check_divisible(num_heads, "num_heads", num_key_value_heads, "num_key_value_heads")
    check_rate(dropout, "dropout")
    check_bool(norm_first, "norm_first")
    check_positive_float(layer_norm_epsilon, "layer_norm_epsilon")
    check_one_of(position_encoding, "position_encoding", POSITION_ENCODINGS)
    block_components.check_block_arguments(normalization, position_scheme, "dot_product")


def check_activation_name(activation):
    """The builders serialize their arguments, so activations go by name."""
    if not isinstance(activation, str):
        raise ValueError(
            "Received an invalid value for argument `activation`, expected "
            "the name of a Keras activation or gated variant (a string). "
            f"Received: activation={activation!r}"
        )
    return activation


def make_embedding(
    vocabulary_size, sequence_length, hidden_dim, position_encoding,
    scale_embeddings, name,
):
    """Token + position embedding; id 0 is padding and starts the Keras mask."""
    return TokenAndPositionEmbedding(
        vocabulary_size=vocabulary_size,
        sequence_length=sequence_length,
        embedding_dim=hidden_dim,
        position_encoding=position_encoding,
        mask_zero=True,
        scale_embeddings=scale_embeddings,
        name=name,
    )


def block_arguments(
    num_heads, intermediate_dim, num_key_value_heads, dropout, activation,
    norm_first, layer_norm_epsilon, normalization, position_scheme,
    attention_kernel="dot_product", attention_kernel_options=None,
):
    """Constructor arguments shared by the encoder and decoder blocks."""
    return dict(
        attention_kernel=attention_kernel,
        attention_kernel_options=attention_kernel_options,
        num_heads=num_heads,
        intermediate_dim=intermediate_dim,
        num_key_value_heads=num_key_value_heads,
        dropout=dropout,
        activation=activation,
        norm_first=norm_first,
        layer_norm_epsilon=layer_norm_epsilon,
        normalization=normalization,
        position_scheme=position_scheme,
    )


def layer_block_arguments(block_kwargs, index):
    """The arguments of block `index` of a stack: for a kernel with a random
    block pattern (`"big_bird"`'s `pattern_seed`), block `i` draws its own
    pattern, seed `pattern_seed + i` (0 + i by default), as each layer of
    the BigBird paper's model draws its random blocks; all else is shared."""
    if not kernel_takes(block_kwargs["attention_kernel"], "pattern_seed"):
        return block_kwargs
    options = dict(block_kwargs["attention_kernel_options"] or {})
    options["pattern_seed"] = options.get("pattern_seed", 0) + index
    return {**block_kwargs, "attention_kernel_options": options}


def encoder_stack(x, num_layers, block_kwargs, prefix="encoder"):
    """`num_layers` encoder blocks; the Keras padding mask rides along."""
    for i in range(num_layers):
        x = TransformerEncoderBlock(
            **layer_block_arguments(block_kwargs, i), name=f"{prefix}_block_{i}"
        )(x)
    return final_norm(x, block_kwargs, f"{prefix}_final_norm")


def decoder_stack(x, num_layers, block_kwargs, encoder_output=None):
    """`num_layers` decoder blocks (with cross-attention when given an encoder)."""
    for i in range(num_layers):
        block = TransformerDecoderBlock(
            **layer_block_arguments(block_kwargs, i), name=f"decoder_block_{i}"
        )
        x = block(x) if encoder_output is None else block(x, encoder_output)
    return final_norm(x, block_kwargs, "decoder_final_norm")


def final_norm(x, block_kwargs, name):
    """The closing normalization of a pre-LN stack (identity for post-LN)."""
    if not block_kwargs["norm_first"]:
        return x
    norm = block_components.make_norm(
        block_kwargs["normalization"], block_kwargs["layer_norm_epsilon"], None, name
    )
    return norm(x)


def output_logits(x, embedding, tie_output_embedding, vocabulary_size):
    """`(B, T, V)` logits: the tied embedding table or a `Dense` head."""
    if tie_output_embedding:
        return embedding.token_embedding(x, reverse=True)  # (B, T, V)
    return keras.layers.Dense(vocabulary_size, name="lm_head")(x)  # (B, T, V)


@keras.saving.register_keras_serializable(package="keras_attention")
class FirstTokenPooling(keras.layers.Layer):
    """Pools a `(B, T, E)` sequence to its first position, `(B, E)`.

    The "[CLS]" pooling of BERT: the model reads the hidden state of a
    classification token that the data pipeline puts first in every
    sequence. The input mask is consumed (the output has no time axis).

    Example:

    ```python
    import numpy as np
    from keras_attention.models.model_parts import FirstTokenPooling
    pooled = FirstTokenPooling()(np.arange(12.0).reshape(2, 3, 2))
    tuple(pooled.shape)  # (2, 2)
    ```
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.built = True

    def call(self, inputs, mask=None):
        return inputs[:, 0, :]  # (B, E)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
