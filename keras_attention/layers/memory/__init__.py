"""Neural Turing Machine and Differentiable Neural Computer memory cells."""

from keras_attention.layers.memory.dnc import DNC
from keras_attention.layers.memory.dnc_cell import DNCCell
from keras_attention.layers.memory.ntm import NTM
from keras_attention.layers.memory.ntm_cell import NTMCell

__all__ = ["DNC", "DNCCell", "NTM", "NTMCell"]
