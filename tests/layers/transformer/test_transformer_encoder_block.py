import keras
import keras_hub
import numpy as np
import pytest
from backend_utils import to_numpy

from block_test_utils import copy_weights_from_keras_hub
from block_test_utils import randomize
from harness import run_layer_test
from keras_attention.layers import TransformerEncoderBlock

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 6, 16)).astype("float32")
PADDING = np.array([[1] * 6, [1] * 4 + [0] * 2], dtype=bool)


@pytest.mark.parametrize(
    "init_kwargs",
    [
        {"num_heads": 2, "intermediate_dim": 32},
        {
            "num_heads": 4,
            "intermediate_dim": 24,
            "norm_first": True,
            "normalization": "rms_norm",
            "activation": "swiglu",
            "position_scheme": "rotary",
            "num_key_value_heads": 2,
        },
        {"num_heads": 2, "intermediate_dim": 32, "position_scheme": "relative"},
        {"num_heads": 2, "intermediate_dim": 32, "position_scheme": "alibi",
         "dropout": 0.1, "attention_dropout": 0.0},
    ],
    ids=["post_ln", "pre_ln_rms_swiglu_rotary_gqa", "relative", "alibi"],
)
def test_harness(init_kwargs):
    run_layer_test(
        TransformerEncoderBlock,
        init_kwargs,
        X,
        expected_output_shape=(2, 6, 16),
    )


def test_harness_with_scores():
    run_layer_test(
        TransformerEncoderBlock,
        {"num_heads": 2, "intermediate_dim": 32},
        X,
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 6, 16), (2, 2, 6, 6)],
        expected_num_trainable_weights=16,
    )


def _hub_and_ours(norm_first):
    hub = keras_hub.layers.TransformerEncoder(
        intermediate_dim=32, num_heads=2, normalize_first=norm_first
    )
    hub(X)
    randomize(hub)
    ours = TransformerEncoderBlock(num_heads=2, intermediate_dim=32, norm_first=norm_first)
    ours(X)
    copy_weights_from_keras_hub(hub, ours)
    return hub, ours


@pytest.mark.parametrize("norm_first", [False, True])
def test_equals_keras_hub_encoder(norm_first):
    hub, ours = _hub_and_ours(norm_first)
    np.testing.assert_allclose(to_numpy(ours(X)), to_numpy(hub(X)), atol=1e-5)


def test_equals_keras_hub_encoder_with_padding_on_real_tokens():
    """Deliberate difference: we also mask padded *queries*.

    keras-hub masks padded keys only, so its outputs at padded positions mix
    real tokens; ours attend nothing there. Real positions agree exactly, and
    padded positions are the only ones allowed to differ.
    """
    hub, ours = _hub_and_ours(False)
    expected = hub(X, padding_mask=PADDING)
    got = ours(X, padding_mask=PADDING)
    np.testing.assert_allclose(
        to_numpy(got)[PADDING], to_numpy(expected)[PADDING], atol=1e-5
    )
    assert not np.allclose(to_numpy(got)[~PADDING], to_numpy(expected)[~PADDING])


def test_implicit_mask_equals_explicit_padding_mask_and_propagates():
    ids = np.array([[3, 4, 5, 6, 7, 8], [3, 4, 5, 6, 0, 0]])
    inputs = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 16, mask_zero=True)(inputs)
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
    outputs = block(embedded)
    model = keras.Model(inputs, outputs)
    embedding = model.layers[1]
    implicit = model(ids)
    explicit = block(embedding(ids), padding_mask=ids != 0)
    np.testing.assert_allclose(to_numpy(implicit), to_numpy(explicit), atol=1e-6)
    # The mask reaches the next layer: a masked average ignores the padding.
    pooled = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(outputs))(ids)
    np.testing.assert_allclose(
        to_numpy(pooled)[1], to_numpy(implicit)[1, :4].mean(axis=0), atol=1e-5
    )


def test_padded_keys_do_not_change_real_outputs():
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
    changed = X.copy()
    changed[1, 4:] = 100.0
    a = block(X, padding_mask=PADDING)
    b = block(changed, padding_mask=PADDING)
    np.testing.assert_allclose(to_numpy(a)[1, :4], to_numpy(b)[1, :4], atol=1e-5)


@pytest.mark.parametrize("scheme", [None, "rotary", "relative", "alibi"])
def test_causal_mask_hides_the_future(scheme):
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32, position_scheme=scheme)
    changed = X.copy()
    changed[:, 3:] = RNG.normal(size=changed[:, 3:].shape)
    a = block(X, use_causal_mask=True)
    b = block(changed, use_causal_mask=True)
    np.testing.assert_allclose(to_numpy(a)[:, :3], to_numpy(b)[:, :3], atol=1e-5)
    assert not np.allclose(to_numpy(a)[:, 3:], to_numpy(b)[:, 3:])


def test_dropout_only_in_training():
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32, dropout=0.5)
    np.testing.assert_allclose(to_numpy(block(X, training=False)), to_numpy(block(X)), atol=0)
    assert not np.allclose(to_numpy(block(X, training=True)), to_numpy(block(X, training=False)))


def test_position_schemes_change_the_output():
    outputs = {}
    for scheme in (None, "rotary", "relative", "alibi"):
        keras.utils.set_random_seed(7)
        outputs[scheme] = to_numpy(
            TransformerEncoderBlock(num_heads=2, intermediate_dim=32, position_scheme=scheme)(X)
        )
    for scheme in ("rotary", "alibi"):
        assert not np.allclose(outputs[scheme], outputs[None], atol=1e-4), scheme


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_heads": 0, "intermediate_dim": 8}, "`num_heads`.*positive integer.*num_heads=0"),
        ({"num_heads": 2, "intermediate_dim": 0}, "`intermediate_dim`.*intermediate_dim=0"),
        ({"num_heads": 2, "intermediate_dim": 8, "dropout": 1.0}, r"`dropout`.*\[0, 1\).*dropout=1.0"),
        ({"num_heads": 2, "intermediate_dim": 8, "attention_dropout": -0.1}, "`attention_dropout`"),
        ({"num_heads": 2, "intermediate_dim": 8, "normalization": "batch"}, "`normalization`.*batch"),
        ({"num_heads": 2, "intermediate_dim": 8, "position_scheme": "xpos"}, "`position_scheme`.*xpos"),
        ({"num_heads": 2, "intermediate_dim": 8, "attention_kernel": "flash"}, "`attention_kernel`.*flash"),
        ({"num_heads": 2, "intermediate_dim": 8, "activation": "nope"}, "`activation`.*nope"),
        ({"num_heads": 2, "intermediate_dim": 8, "layer_norm_epsilon": 0}, "`layer_norm_epsilon`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TransformerEncoderBlock(**kwargs)


def test_hidden_dim_not_divisible_by_heads():
    block = TransformerEncoderBlock(num_heads=3, intermediate_dim=8)
    with pytest.raises(ValueError, match="`hidden_dim`.*multiple of `num_heads`=3.*hidden_dim=16"):
        block(X)


def test_wrong_input_rank():
    with pytest.raises(ValueError, match="`inputs`.*rank-3.*inputs.shape=\\(2, 16\\)"):
        TransformerEncoderBlock(num_heads=2, intermediate_dim=8)(X[:, 0])
