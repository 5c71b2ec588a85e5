"""keras-tuner HyperModels for attention and memory models."""

from keras_attention.tuning.memory_hyper_model import MemoryHyperModel
from keras_attention.tuning.transformer_classifier_hyper_model import (
    TransformerClassifierHyperModel,
)
from keras_attention.tuning.transformer_translator_hyper_model import (
    TransformerTranslatorHyperModel,
)

__all__ = [
    "MemoryHyperModel",
    "TransformerClassifierHyperModel",
    "TransformerTranslatorHyperModel",
]
