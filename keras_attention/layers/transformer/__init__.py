"""Transformer building blocks: feed-forward, encoder and decoder blocks."""

from keras_attention.layers.transformer.feed_forward import FeedForward
from keras_attention.layers.transformer.transformer_decoder_block import (
    TransformerDecoderBlock,
)
from keras_attention.layers.transformer.transformer_encoder_block import (
    TransformerEncoderBlock,
)

__all__ = ["FeedForward", "TransformerDecoderBlock", "TransformerEncoderBlock"]
