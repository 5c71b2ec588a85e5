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


def _export_and_serve(build, tmp_path):
    tf = pytest.importorskip("tensorflow")
    inputs = keras.Input((None, F), name="x")
    model = keras.Model(inputs, build(inputs))
    model.export(str(tmp_path), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path))  # kept: it owns the variables
    for length in (5, 70):  # shorter and longer than Performer's 64-chunk
        x = np.random.default_rng(length).standard_normal((2, length, F)).astype("float32")
        served = np.asarray(loaded.serve(tf.constant(x)))
        expected = keras.ops.convert_to_numpy(model(x))
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_exports_over_a_symbolic_length(name, tmp_path):
    _export_and_serve(MODELS[name], tmp_path)
