"""Attention layers: classic (Bahdanau, Luong), scaled dot-product, multi-head."""

from keras_attention.layers.attention.additive_attention import AdditiveAttention
from keras_attention.layers.attention.attention_pooling import AttentionPooling
from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.layers.attention.multiplicative_attention import (
    MultiplicativeAttention,
)
from keras_attention.layers.attention.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)

__all__ = [
    "AdditiveAttention",
    "AttentionPooling",
    "MultiplicativeAttention",
    "ScaledDotProductAttention",
    "MultiHeadAttention",
]
