"""SavedModel export for TF Serving."""

from keras_attention.export.serving import export_for_serving

__all__ = ["export_for_serving"]
