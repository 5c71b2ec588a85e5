"""Positional encodings: sinusoidal, learned, rotary, relative bias, ALiBi."""

from keras_attention.layers.position.alibi_bias import ALiBiBias
from keras_attention.layers.position.position_embedding import PositionEmbedding
from keras_attention.layers.position.relative_position_bias import (
    RelativePositionBias,
)
from keras_attention.layers.position.rotary_embedding import RotaryEmbedding
from keras_attention.layers.position.sinusoidal_position_encoding import (
    SinusoidalPositionEncoding,
)
from keras_attention.layers.position.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)

__all__ = [
    "ALiBiBias",
    "PositionEmbedding",
    "RelativePositionBias",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "TokenAndPositionEmbedding",
]
