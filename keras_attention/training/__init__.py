"""Training recipe: schedules, masked losses and metrics, callbacks, BLEU."""

from keras_attention.training.bits_error import BitErrorsPerSequence
from keras_attention.training.bleu import BleuCallback
from keras_attention.training.bleu import corpus_bleu
from keras_attention.training.checkpoint_averaging import CheckpointAveraging
from keras_attention.training.checkpoint_averaging import average_checkpoints
from keras_attention.training.losses import MaskedSparseCategoricalCrossentropy
from keras_attention.training.metrics import MaskedAccuracy
from keras_attention.training.schedules import TransformerSchedule

__all__ = [
    "BitErrorsPerSequence",
    "BleuCallback",
    "CheckpointAveraging",
    "MaskedAccuracy",
    "MaskedSparseCategoricalCrossentropy",
    "TransformerSchedule",
    "average_checkpoints",
    "corpus_bleu",
]
