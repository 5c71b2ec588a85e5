"""SavedModel export for TF Serving."""

from keras_attention.export.pipelines import ClassifierPipeline
from keras_attention.export.pipelines import FillMaskPipeline
from keras_attention.export.pipelines import GeneratorPipeline
from keras_attention.export.pipelines import TranslatorPipeline
from keras_attention.export.serving import export_for_serving

__all__ = [
    "ClassifierPipeline",
    "FillMaskPipeline",
    "GeneratorPipeline",
    "TranslatorPipeline",
    "export_for_serving",
]
