"""Shared construction of the parts of Transformer blocks.

One place decides, for both the encoder and the decoder block, how a
normalization layer, an attention kernel and a positional scheme are built,
so a new attention kernel or positional scheme plugs into every block by a
registry entry instead of a new block class.
"""

import inspect
import random

import keras
import numpy as np

from keras_attention.layers.attention.big_bird_attention import BigBirdAttention
from keras_attention.layers.attention.linformer_attention import LinformerAttention
from keras_attention.layers.attention.local_attention import LocalAttention
from keras_attention.layers.attention.multi_head_attention import (
    ATTENTION_IMPLEMENTATIONS,
)
from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.layers.attention.performer_attention import PerformerAttention
from keras_attention.layers.position import ALiBiBias
from keras_attention.layers.position import RelativePositionBias
from keras_attention.layers.position import RotaryEmbedding
from keras_attention.layers.transformer.token_normalization import LayerNormalization
from keras_attention.layers.transformer.token_normalization import RMSNormalization
from keras_attention.utils.validation import check_one_of

NORMALIZATIONS = ("layer_norm", "rms_norm")
POSITION_SCHEMES = (None, "rotary", "relative", "alibi")

# name -> attention layer class. Every class takes the constructor arguments
# of `MultiHeadAttention` used below and is called like it.
ATTENTION_KERNELS = {
    "dot_product": MultiHeadAttention,
    "performer": PerformerAttention,
    "linformer": LinformerAttention,
    "local": LocalAttention,
    "big_bird": BigBirdAttention,
}


def register_attention_kernel(name, layer_cls):
    """Make `layer_cls` selectable as `attention_kernel=name` in the blocks.

    Args:
        name: the kernel name.
        layer_cls: an attention layer class taking `num_heads`, `key_dim`,
            `num_key_value_heads`, `dropout`, `rotary_embedding`,
            `kernel_initializer`, `bias_initializer` (plus `**kwargs`), called
            like `MultiHeadAttention`.
    """
    ATTENTION_KERNELS[name] = layer_cls


def check_block_arguments(normalization, position_scheme, attention_kernel):
    """Validate the block options chosen by name."""
    check_one_of(normalization, "normalization", NORMALIZATIONS)
    if position_scheme not in POSITION_SCHEMES:
        raise ValueError(
            "Received an invalid value for argument `position_scheme`, "
            f"expected one of {list(POSITION_SCHEMES)}. Received: "
            f"position_scheme={position_scheme!r}"
        )
    check_one_of(attention_kernel, "attention_kernel", tuple(ATTENTION_KERNELS))


def make_norm(normalization, epsilon, dtype, name):
    """A LayerNormalization or RMSNormalization sub-layer (the Keras layers,
    computed on `(rows, E)`, see `token_normalization`)."""
    if normalization == "rms_norm":
        return RMSNormalization(epsilon=epsilon, dtype=dtype, name=name)
    return LayerNormalization(epsilon=epsilon, dtype=dtype, name=name)


def resolve_key_dim(key_dim, hidden_dim, num_heads):
    """`key_dim`, or `hidden_dim // num_heads` when it divides exactly."""
    if key_dim is not None:
        return key_dim
    if hidden_dim % num_heads != 0:
        raise ValueError(
            "Received an invalid value for argument `hidden_dim`, expected a "
            f"multiple of `num_heads`={num_heads} (or pass `key_dim`). "
            f"Received: hidden_dim={hidden_dim}"
        )
    return hidden_dim // num_heads


# Set by the blocks themselves; not `attention_kernel_options` keys.
_BLOCK_ATTENTION_ARGUMENTS = (
    "num_heads", "key_dim", "num_key_value_heads", "dropout", "rotary_embedding",
    "kernel_initializer", "bias_initializer", "dtype", "name",
    "attention_implementation", "output_shape",
)


def check_attention_kernel_options(options, kernel, argument="attention_kernel_options"):
    """Validate a block's `attention_kernel_options` for `kernel`.

    `None` or a dict of extra constructor arguments of the kernel's layer
    class (e.g. `{"window_size": 32}` for `"local"`), not one the block
    sets itself. Builds one throwaway kernel layer (no weights), so an
    unknown option or a bad value fails here, with the layer's own message.
    Errors name `argument` (the caller's name for the options).

    Returns:
        A new dict (`{}` for `None`).
    """
    if options is None:
        return {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise TypeError(
            f"Received an invalid value for argument `{argument}`, "
            "expected None or a dict of the kernel layer's constructor "
            "arguments by name. Received: "
            f"{argument}={options!r} of type {type(options).__name__}"
        )
    reserved = sorted(set(options) & set(_BLOCK_ATTENTION_ARGUMENTS))
    if reserved:
        raise ValueError(
            f"Received an invalid value for argument `{argument}`, "
            f"expected no key the block sets itself ({list(_BLOCK_ATTENTION_ARGUMENTS)}; "
            "use the block's own arguments). Received: "
            f"{argument}={options!r} (keys {reserved})"
        )
    layer_cls = ATTENTION_KERNELS[kernel]
    # A layer's unseeded SeedGenerator draws from Python's `random`: keep
    # the seeded streams as they were, so the check changes no weights.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        layer_cls(num_heads=1, key_dim=1, **options)
    except (TypeError, ValueError) as error:
        raise type(error)(
            f"Received an invalid value for argument `{argument}` "
            f"for attention_kernel={kernel!r} ({layer_cls.__name__}): {error}"
        ) from error
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return dict(options)


def make_attention(
    kernel,
    num_heads,
    key_dim,
    num_key_value_heads,
    dropout,
    use_rotary,
    kernel_initializer,
    bias_initializer,
    dtype,
    name,
    attention_implementation="auto",
    options=None,
):
    """Build the attention sub-layer for `kernel`, with `options` (checked
    by `check_attention_kernel_options`) as extra constructor arguments."""
    extra = dict(options or {})
    if attention_implementation != "auto":
        # Only kernels that name the argument (see
        # check_attention_implementation) receive it.
        extra["attention_implementation"] = attention_implementation
    return ATTENTION_KERNELS[kernel](
        num_heads=num_heads,
        key_dim=key_dim,
        num_key_value_heads=num_key_value_heads,
        dropout=dropout,
        rotary_embedding=RotaryEmbedding() if use_rotary else None,
        kernel_initializer=keras.initializers.serialize(kernel_initializer),
        bias_initializer=keras.initializers.serialize(bias_initializer),
        dtype=dtype,
        name=name,
        **extra,
    )


def check_attention_implementation(attention_implementation, kernel, dropout):
    """Validate a block's `attention_implementation` against its kernel.

    Anything but `"auto"` needs a kernel class whose constructor names
    `attention_implementation` (`MultiHeadAttention`), and `"blockwise"` /
    `"fused"` need an attention dropout of 0.
    """
    check_one_of(
        attention_implementation, "attention_implementation",
        ATTENTION_IMPLEMENTATIONS,
    )
    if attention_implementation == "auto":
        return attention_implementation
    layer_cls = ATTENTION_KERNELS[kernel]
    if "attention_implementation" not in inspect.signature(layer_cls.__init__).parameters:
        raise ValueError(
            "Received incompatible arguments `attention_implementation` and "
            f"`attention_kernel`: {layer_cls.__name__} has no "
            "`attention_implementation` option, expected "
            "attention_implementation='auto'. Received: "
            f"attention_implementation={attention_implementation!r}, "
            f"attention_kernel={kernel!r}"
        )
    if attention_implementation in ("blockwise", "fused") and dropout > 0:
        raise ValueError(
            "Received incompatible arguments `attention_implementation` and "
            "the attention dropout: the "
            f"{attention_implementation!r} implementation applies no attention "
            "dropout, expected attention_dropout=0 (it defaults to `dropout`). "
            f"Received: attention_implementation={attention_implementation!r}, "
            f"attention dropout={dropout}"
        )
    return attention_implementation


def make_position_bias(position_scheme, num_heads, bidirectional, dtype, name):
    """The additive position-bias sub-layer, or `None`."""
    if position_scheme == "relative":
        return RelativePositionBias(
            num_heads=num_heads, bidirectional=bidirectional, dtype=dtype, name=name
        )
    if position_scheme == "alibi":
        return ALiBiBias(num_heads=num_heads, dtype=dtype, name=name)
    return None


def serialize_activation(activation):
    """A config entry for an activation given by name or as a callable."""
    if isinstance(activation, str):
        return activation
    return keras.activations.serialize(keras.activations.get(activation))
