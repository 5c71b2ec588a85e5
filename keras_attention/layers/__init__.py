"""Public Keras layers of `keras_attention`."""

from keras_attention.layers.attention import *  # noqa: F401,F403
from keras_attention.layers.memory import *  # noqa: F401,F403
from keras_attention.layers.position import *  # noqa: F401,F403
from keras_attention.layers.transformer import *  # noqa: F401,F403
from keras_attention.layers import attention as _attention
from keras_attention.layers import memory as _memory
from keras_attention.layers import position as _position
from keras_attention.layers import transformer as _transformer

__all__ = [
    *_attention.__all__,
    *_position.__all__,
    *_memory.__all__,
    *_transformer.__all__,
]
