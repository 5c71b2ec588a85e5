"""Functional-API model builders returning `keras.Model`."""

from keras_attention.models.builder_model import BuilderModel
from keras_attention.models.causal_lm import causal_lm
from keras_attention.models.masked_lm import masked_lm
from keras_attention.models.memory_model import memory_model
from keras_attention.models.mlm_masking import mlm_mask_tokens
from keras_attention.models.parameter_count import count_parameters
from keras_attention.models.transformer_classifier import transformer_classifier
from keras_attention.models.transformer_translator import transformer_translator

__all__ = [
    "BuilderModel",
    "causal_lm",
    "count_parameters",
    "masked_lm",
    "memory_model",
    "mlm_mask_tokens",
    "transformer_classifier",
    "transformer_translator",
]
