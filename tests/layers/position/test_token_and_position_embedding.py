import math

import keras
import numpy as np
import pytest
from keras import ops

from harness import run_layer_test
from keras_attention.layers import TokenAndPositionEmbedding

TOKENS = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 0, 0]], dtype="int32")


def test_harness_learned():
    run_layer_test(
        TokenAndPositionEmbedding,
        {"vocabulary_size": 10, "sequence_length": 7, "embedding_dim": 4},
        TOKENS,
        expected_output_shape=(2, 5, 4),
        expected_num_trainable_weights=2,
        expected_num_non_trainable_weights=0,
    )


def test_harness_sinusoidal_masked_scaled():
    run_layer_test(
        TokenAndPositionEmbedding,
        {
            "vocabulary_size": 10,
            "sequence_length": None,
            "embedding_dim": 5,
            "position_encoding": "sinusoidal",
            "mask_zero": True,
            "scale_embeddings": True,
            "embeddings_initializer": keras.initializers.RandomNormal(seed=3),
        },
        TOKENS,
        expected_output_shape=(2, 5, 5),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )


def _built(**kwargs):
    layer = TokenAndPositionEmbedding(**kwargs)
    layer.build((None, None))
    return layer


def sinusoid(length, dim):
    table = np.zeros((length, dim))
    for pos in range(length):
        for k in range(dim):
            angle = pos / 10000 ** ((k - k % 2) / dim)
            table[pos, k] = math.sin(angle) if k % 2 == 0 else math.cos(angle)
    return table


@pytest.mark.parametrize("scale", [False, True])
def test_learned_equals_token_plus_position_rows(scale):
    layer = _built(
        vocabulary_size=10, sequence_length=6, embedding_dim=4, scale_embeddings=scale
    )
    tokens = ops.convert_to_numpy(layer.token_embedding.embeddings)
    pos = ops.convert_to_numpy(layer.position_embedding.embeddings)
    out = ops.convert_to_numpy(layer(TOKENS))
    factor = 2.0 if scale else 1.0  # sqrt(embedding_dim = 4)
    np.testing.assert_allclose(out, tokens[TOKENS] * factor + pos[None, :5], atol=1e-6)


def test_sinusoidal_equals_token_plus_formula():
    layer = _built(
        vocabulary_size=10,
        sequence_length=None,
        embedding_dim=3,
        position_encoding="sinusoidal",
    )
    tokens = ops.convert_to_numpy(layer.token_embedding.embeddings)
    long_ids = np.arange(40).reshape(1, 40) % 10
    out = ops.convert_to_numpy(layer(long_ids))
    np.testing.assert_allclose(out, tokens[long_ids] + sinusoid(40, 3)[None], atol=1e-5)


def test_tables_are_initialised_independently():
    layer = _built(vocabulary_size=10, sequence_length=10, embedding_dim=4)
    tokens = ops.convert_to_numpy(layer.token_embedding.embeddings)
    pos = ops.convert_to_numpy(layer.position_embedding.embeddings)
    assert not np.allclose(tokens[:3], pos[:3])


def test_start_index_decoding_matches_full_pass():
    for encoding, length in (("learned", 6), ("sinusoidal", 6)):
        layer = _built(
            vocabulary_size=10,
            sequence_length=length,
            embedding_dim=4,
            position_encoding=encoding,
        )
        full = ops.convert_to_numpy(layer(TOKENS))
        for t in range(5):
            step = layer(TOKENS[:, t : t + 1], start_index=ops.convert_to_tensor(t))
            np.testing.assert_allclose(ops.convert_to_numpy(step), full[:, t : t + 1], atol=1e-6)


def test_mask_reaches_pooling_and_attention_downstream():
    ids = keras.Input((None,), dtype="int32")
    x = TokenAndPositionEmbedding(10, 8, 4, mask_zero=True)(ids)
    pooled = keras.layers.GlobalAveragePooling1D()(x)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, seed=0)(x, x)
    model = keras.Model(ids, [x, pooled, attended])
    emb, pool, att = [ops.convert_to_numpy(t) for t in model(TOKENS)]

    # The pooling layer received the mask: mean over the 3 real tokens of row 1.
    np.testing.assert_allclose(pool[1], emb[1, :3].mean(0), atol=1e-6)
    np.testing.assert_allclose(pool[0], emb[0].mean(0), atol=1e-6)

    # The attention layer received the mask: same as an explicit padding mask.
    mha = model.layers[-1]
    keep = TOKENS != 0
    explicit = mha(emb, emb, attention_mask=keep[:, None, :] & keep[:, :, None])
    np.testing.assert_allclose(att, ops.convert_to_numpy(explicit), atol=1e-5)


def test_compute_mask():
    layer = _built(vocabulary_size=10, sequence_length=6, embedding_dim=2, mask_zero=True)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.compute_mask(TOKENS)), TOKENS != 0
    )
    incoming = np.array([[True, True, False, True, True], [True] * 5])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.compute_mask(TOKENS, incoming)),
        (TOKENS != 0) & incoming,
    )
    plain = _built(vocabulary_size=10, sequence_length=6, embedding_dim=2)
    assert plain.compute_mask(TOKENS) is None


def test_reverse_projection_is_tied_to_the_token_table():
    layer = _built(vocabulary_size=10, sequence_length=6, embedding_dim=4)
    hidden = layer(TOKENS)
    logits = layer.token_embedding(hidden, reverse=True)
    table = ops.convert_to_numpy(layer.token_embedding.embeddings)
    np.testing.assert_allclose(
        ops.convert_to_numpy(logits), ops.convert_to_numpy(hidden) @ table.T, atol=1e-6
    )
    assert len(layer.trainable_weights) == 2


def test_mixed_precision_sub_layers_share_policy():
    layer = TokenAndPositionEmbedding(10, 6, 4, scale_embeddings=True, dtype="mixed_float16")
    out = layer(TOKENS)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert layer.token_embedding.dtype_policy.name == "mixed_float16"
    assert layer.position_embedding.dtype_policy.name == "mixed_float16"


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"vocabulary_size": 0}, r"`vocabulary_size`, expected a positive integer. Received: vocabulary_size=0"),
        ({"embedding_dim": -1}, r"`embedding_dim`, expected a positive integer. Received: embedding_dim=-1"),
        ({"sequence_length": 0}, r"`sequence_length`, expected a positive integer. Received: sequence_length=0"),
        ({"sequence_length": None}, r"`sequence_length`, expected a positive integer. Received: sequence_length=None"),
        ({"position_encoding": "rotary"}, r"`position_encoding`, expected one of \['learned', 'sinusoidal'\]. Received: position_encoding='rotary'"),
    ],
)
def test_invalid_arguments(kwargs, pattern):
    args = {"vocabulary_size": 10, "sequence_length": 6, "embedding_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        TokenAndPositionEmbedding(**args)


@pytest.mark.parametrize("name", ["mask_zero", "scale_embeddings"])
def test_non_bool_flags(name):
    with pytest.raises(TypeError, match=rf"`{name}`, expected a bool. Received: {name}=1"):
        TokenAndPositionEmbedding(10, 6, 4, **{name: 1})


@pytest.mark.parametrize("encoding", ["learned", "sinusoidal"])
def test_positions_past_sequence_length(encoding):
    layer = TokenAndPositionEmbedding(10, 6, 4, position_encoding=encoding)
    with pytest.raises(ValueError, match=r"`sequence_length`, expected at least .* = 7 positions. Received: sequence_length=6"):
        layer(np.ones((1, 7), "int32"))
    layer(np.ones((1, 2), "int32"))
    with pytest.raises(ValueError, match=r"= 5 \+ 2 = 7 positions. Received: sequence_length=6"):
        layer(np.ones((1, 2), "int32"), start_index=5)


def test_invalid_rank():
    with pytest.raises(ValueError, match=r"`inputs`, expected a tensor of rank 2"):
        TokenAndPositionEmbedding(10, 6, 4)(np.ones((1, 2, 3), "int32"))
