"""`model.export` on JAX: attention layers over a symbolic time length.

Keras exports a JAX model through jax2tf with shape polymorphism: the batch
and every `None` length are symbolic dimensions, which are not Python ints
and whose comparisons can be inconclusive ("is t < 64?"). The exported
SavedModel must serve the model's outputs at a length not seen before.
"""

import keras
import numpy as np
import pytest
from backend_utils import BACKEND
from backend_utils import assert_exported_model_serves

import keras_attention.layers as L

pytestmark = pytest.mark.skipif(
    BACKEND != "jax", reason="shape-polymorphic export is the JAX backend's"
)

F = 16
MODELS = {
    # Causal FAVOR+ pads the keys to the queries' length and cuts the prefix
    # sums into chunks of at most the length.
    "performer_causal": lambda x: L.PerformerAttention(num_heads=2, key_dim=8)(
        x, x, use_causal_mask=True
    ),
    "performer": lambda x: L.PerformerAttention(num_heads=2, key_dim=8)(x, x),
    "multi_head_causal": lambda x: L.MultiHeadAttention(num_heads=2, key_dim=8)(
        x, x, use_causal_mask=True
    ),
    # Blockwise: its custom gradient must not close over a tensor of the
    # caller's trace (jax2tf traces the gradient apart).
    "blockwise_causal": lambda x: L.MultiHeadAttention(
        num_heads=2, key_dim=8, attention_implementation="blockwise"
    )(x, x, use_causal_mask=True),
    "local": lambda x: L.LocalAttention(num_heads=2, key_dim=8, window_size=2)(x, x),
    "scaled_dot_product": lambda x: L.ScaledDotProductAttention()(x, x),
    "additive": lambda x: L.AdditiveAttention(units=8)(x, x),
    "encoder_rotary": lambda x: L.TransformerEncoderBlock(
        num_heads=2, intermediate_dim=16, position_scheme="rotary"
    )(x),
    "encoder_relative": lambda x: L.TransformerEncoderBlock(
        num_heads=2, intermediate_dim=16, position_scheme="relative"
    )(x),
    "decoder_alibi": lambda x: L.TransformerDecoderBlock(
        num_heads=2, intermediate_dim=16, position_scheme="alibi"
    )(x),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_exports_over_a_symbolic_length(name, tmp_path):
    inputs = keras.Input((None, F), name="x")
    model = keras.Model(inputs, MODELS[name](inputs))
    # Shorter and longer than Performer's 64-position prefix-sum chunk.
    data = [
        np.random.default_rng(n).standard_normal((2, n, F)).astype("float32")
        for n in (5, 70)
    ]
    assert_exported_model_serves(model, tmp_path, data, rtol=1e-4, atol=1e-5)
