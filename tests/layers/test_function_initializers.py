"""A plain function works as an initializer, as in `keras.layers.Dense`.

Each layer copies its initializers per weight (`clone_initializer`); the
copy used to go through `keras.initializers.serialize`/`get`, which cannot
rebuild a plain function, so building failed with Keras' "Could not
interpret initializer identifier" and no argument named.
"""

import keras
import numpy as np
import pytest

from keras_attention import layers
from keras_attention.utils.initializers import clone_initializer

FILL = 0.25
x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")


def fill(shape, dtype=None):
    return keras.ops.full(shape, FILL, dtype=dtype)


CASES = {
    "additive": (
        lambda: layers.AdditiveAttention(kernel_initializer=fill, bias_initializer=fill),
        (x, x),
    ),
    "multiplicative": (
        lambda: layers.MultiplicativeAttention(score="general", kernel_initializer=fill),
        (x, x),
    ),
    "attention_pooling": (
        lambda: layers.AttentionPooling(kernel_initializer=fill, bias_initializer=fill),
        (x,),
    ),
    "multi_head": (
        lambda: layers.MultiHeadAttention(
            2, 4, kernel_initializer=fill, bias_initializer=fill
        ),
        (x, x),
    ),
    "token_and_position": (
        lambda: layers.TokenAndPositionEmbedding(
            10, 4, 3, embeddings_initializer=fill
        ),
        (np.array([[1, 2, 3]]),),
    ),
    "feed_forward": (
        lambda: layers.FeedForward(
            8, activation="swiglu", kernel_initializer=fill, bias_initializer=fill
        ),
        (x,),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_plain_function_initializes_every_weight(name):
    make, inputs = CASES[name]
    layer = make()
    layer(*inputs)
    assert layer.weights
    for weight in layer.weights:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(weight), np.full(weight.shape, FILL, "float32")
        )


def test_linformer_projections_take_a_plain_function():
    layer = layers.LinformerAttention(
        2, 4, projection_dim=2, sequence_length=3, projection_initializer=fill
    )
    layer(x, x)
    for weight in (layer.key_projection, layer.value_projection):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(weight), np.full(weight.shape, FILL, "float32")
        )


def test_clone_initializer_is_a_fresh_equal_copy():
    initializer = keras.initializers.HeNormal(seed=5)
    clone = clone_initializer(initializer)
    assert clone is not initializer
    assert type(clone) is type(initializer)
    assert clone.get_config() == initializer.get_config()
    assert clone_initializer(initializer, seed_offset=2).get_config()["seed"] == 7
    assert clone_initializer(fill) is fill
