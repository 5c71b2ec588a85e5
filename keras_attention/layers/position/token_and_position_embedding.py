"""Token embedding plus a learned or sinusoidal position encoding."""

import math

import keras
from keras import ops

from keras_attention.layers.position.position_embedding import PositionEmbedding
from keras_attention.layers.position.position_embedding import check_fits_table
from keras_attention.layers.position.position_math import check_start_index
from keras_attention.layers.position.sinusoidal_position_encoding import (
    SinusoidalPositionEncoding,
)
from keras_attention.utils.initializers import clone_initializer
from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_one_of
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rank

POSITION_ENCODINGS = ("learned", "sinusoidal")


@keras.saving.register_keras_serializable(package="keras_attention")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Token embedding plus a position encoding, the input of a Transformer.

    Embeds integer token ids with a `keras.layers.ReversibleEmbedding` (the
    `token_embedding` attribute, whose `reverse=True` call projects hidden
    states back to vocabulary logits with the same table, for tied output
    weights), optionally scales them by `sqrt(embedding_dim)` as in the
    paper, and adds a learned (`PositionEmbedding`) or sinusoidal
    (`SinusoidalPositionEncoding`) position encoding (the
    `position_embedding` attribute). With `mask_zero=True`, token id 0 is
    padding and the layer emits a `(B, T)` Keras mask that downstream layers
    (attention, pooling, RNNs) receive through the functional API.

    Shapes: B batch, T sequence length, D `embedding_dim`.

    Args:
        vocabulary_size: int, the number of token ids.
        sequence_length: int, the maximum sequence length (positions
            `start_index + T` must not exceed it). May be `None` with
            `position_encoding="sinusoidal"`, which works for any length.
        embedding_dim: int, D.
        position_encoding: `"learned"` (a trainable table of
            `sequence_length` rows) or `"sinusoidal"` (fixed, no weights).
        mask_zero: bool, whether id 0 is padding to be masked downstream.
        scale_embeddings: bool, whether to multiply the token embeddings by
            `sqrt(embedding_dim)` before adding positions (Vaswani et al.,
            section 3.4).
        embeddings_initializer: initializer of the token table and of the
            learned position table.

    Call arguments:
        inputs: `(B, T)` integer token ids.
        start_index: int or scalar integer tensor, the position of the first
            token (the cache index when decoding). Defaults to 0.

    Returns:
        `(B, T, D)` embeddings in the layer's compute dtype, carrying a
        `(B, T)` mask when `mask_zero=True`.

    Raises:
        ValueError: if a size is not a positive integer, `sequence_length`
            is `None` with learned positions, `position_encoding` is unknown,
            `inputs` is not rank 2, or the positions run past
            `sequence_length`.
        TypeError: if `mask_zero` or `scale_embeddings` is not a bool.

    Example:

    ```python
    import numpy as np
    import keras_attention as ka
    layer = ka.layers.TokenAndPositionEmbedding(
        vocabulary_size=10, sequence_length=6, embedding_dim=4, mask_zero=True)
    x = layer(np.array([[3, 4, 0, 0]]))
    tuple(x.shape)  # (1, 4, 4)
    logits = layer.token_embedding(x, reverse=True)  # (1, 4, 10), tied
    ```

    References:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762),
          sections 3.4 and 3.5.
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        position_encoding="learned",
        mask_zero=False,
        scale_embeddings=False,
        embeddings_initializer="uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int(vocabulary_size, "vocabulary_size")
        self.position_encoding = check_one_of(
            position_encoding, "position_encoding", POSITION_ENCODINGS
        )
        self.sequence_length = check_positive_int(
            sequence_length,
            "sequence_length",
            allow_none=position_encoding == "sinusoidal",
        )
        self.embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
        self.mask_zero = check_bool(mask_zero, "mask_zero")
        self.scale_embeddings = check_bool(scale_embeddings, "scale_embeddings")
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.supports_masking = True

        self.token_embedding = keras.layers.ReversibleEmbedding(
            self.vocabulary_size,
            self.embedding_dim,
            tie_weights=True,
            embeddings_initializer=clone_initializer(self.embeddings_initializer),
            mask_zero=self.mask_zero,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        if self.position_encoding == "learned":
            self.position_embedding = PositionEmbedding(
                self.sequence_length,
                initializer=clone_initializer(self.embeddings_initializer),
                dtype=self.dtype_policy,
                name="position_embedding",
            )
        else:
            self.position_embedding = SinusoidalPositionEncoding(
                dtype=self.dtype_policy, name="position_embedding"
            )

    def build(self, input_shape):
        check_rank(input_shape, "inputs", 2)
        self.token_embedding.build(input_shape)
        self.position_embedding.build((*input_shape, self.embedding_dim))
        self.built = True

    def call(self, inputs, start_index=0):
        check_start_index(start_index)
        if self.sequence_length is not None:
            check_fits_table(inputs.shape[1], start_index, self.sequence_length)
        tokens = self.token_embedding(inputs)  # (B, T, D)
        if self.scale_embeddings:
            tokens = tokens * ops.cast(math.sqrt(self.embedding_dim), tokens.dtype)
        positions = self.position_embedding(
            tokens, start_index=start_index
        )  # (B, T, D)
        return tokens + positions

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return mask
        padding = ops.not_equal(inputs, 0)  # (B, T)
        if mask is None:
            return padding
        return ops.logical_and(padding, ops.cast(mask, "bool"))  # (B, T)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "position_encoding": self.position_encoding,
                "mask_zero": self.mask_zero,
                "scale_embeddings": self.scale_embeddings,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
