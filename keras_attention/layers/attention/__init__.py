"""Attention layers: classic (Bahdanau, Luong), scaled dot-product, multi-head."""

from keras_attention.layers.attention.additive_attention import AdditiveAttention
from keras_attention.layers.attention.attention_pooling import AttentionPooling
from keras_attention.layers.attention.big_bird_attention import BigBirdAttention
from keras_attention.layers.attention.linformer_attention import LinformerAttention
from keras_attention.layers.attention.local_attention import LocalAttention
from keras_attention.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attention.layers.attention.multiplicative_attention import (
    MultiplicativeAttention,
)
from keras_attention.layers.attention.performer_attention import PerformerAttention
from keras_attention.layers.attention.scaled_dot_product_attention import (
    ScaledDotProductAttention,
)

__all__ = [
    "AdditiveAttention",
    "AttentionPooling",
    "MultiplicativeAttention",
    "ScaledDotProductAttention",
    "MultiHeadAttention",
    "PerformerAttention",
    "LinformerAttention",
    "LocalAttention",
    "BigBirdAttention",
]
