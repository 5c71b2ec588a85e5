"""Pure attention functions on `keras.ops`: kernels and masks."""

from keras_attention.ops.attention import attention_combine
from keras_attention.ops.attention import attention_logits
from keras_attention.ops.attention import masked_softmax
from keras_attention.ops.attention import scaled_dot_product_attention
from keras_attention.ops.blockwise_attention import blockwise_attention
from keras_attention.ops.masks import causal_mask
from keras_attention.ops.masks import mask_fill_value
from keras_attention.ops.masks import merge_masks
from keras_attention.ops.masks import padding_mask

__all__ = [
    "attention_combine",
    "attention_logits",
    "blockwise_attention",
    "causal_mask",
    "mask_fill_value",
    "masked_softmax",
    "merge_masks",
    "padding_mask",
    "scaled_dot_product_attention",
]
