import keras
import keras_hub
import numpy as np
import pytest
from backend_utils import to_numpy
from keras import ops

import backend_utils
from block_test_utils import copy_weights_from_keras_hub
from block_test_utils import randomize
from harness import run_layer_test
from keras_attention.layers import TransformerDecoderBlock

RNG = np.random.default_rng(1)
TARGET = RNG.normal(size=(2, 5, 16)).astype("float32")
SOURCE = RNG.normal(size=(2, 7, 16)).astype("float32")
TARGET_PADDING = np.array([[1] * 5, [1] * 3 + [0] * 2], dtype=bool)
SOURCE_PADDING = np.array([[1] * 7, [1] * 4 + [0] * 3], dtype=bool)


@pytest.mark.parametrize(
    "init_kwargs",
    [
        {"num_heads": 2, "intermediate_dim": 32},
        {"num_heads": 4, "intermediate_dim": 24, "norm_first": True,
         "normalization": "rms_norm", "activation": "geglu",
         "position_scheme": "rotary", "num_key_value_heads": 1},
        {"num_heads": 2, "intermediate_dim": 32, "position_scheme": "relative"},
    ],
    ids=["post_ln", "pre_ln_rms_geglu_rotary_mqa", "relative"],
)
def test_harness_cross_attention(init_kwargs):
    run_layer_test(
        TransformerDecoderBlock,
        init_kwargs,
        {"decoder_sequence": TARGET, "encoder_sequence": SOURCE},
        expected_output_shape=(2, 5, 16),
    )


def test_harness_decoder_only_with_scores():
    run_layer_test(
        TransformerDecoderBlock,
        {"num_heads": 2, "intermediate_dim": 32, "position_scheme": "alibi"},
        TARGET,
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 5, 16), (2, 2, 5, 5)],
        expected_num_trainable_weights=16,
    )


def test_harness_with_scores_cross():
    run_layer_test(
        TransformerDecoderBlock,
        {"num_heads": 2, "intermediate_dim": 32},
        {"decoder_sequence": TARGET, "encoder_sequence": SOURCE},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=[(2, 5, 16), (2, 2, 5, 7), (2, 2, 5, 5)],
        expected_num_trainable_weights=26,
    )


def _hub_and_ours(norm_first, cross=True):
    hub = keras_hub.layers.TransformerDecoder(
        intermediate_dim=32, num_heads=2, normalize_first=norm_first
    )
    ours = TransformerDecoderBlock(num_heads=2, intermediate_dim=32, norm_first=norm_first)
    if cross:
        hub(TARGET, SOURCE)
        ours(TARGET, SOURCE)
    else:
        hub(TARGET)
        ours(TARGET)
    randomize(hub)
    copy_weights_from_keras_hub(hub, ours)
    return hub, ours


@pytest.mark.parametrize("norm_first", [False, True])
def test_equals_keras_hub_decoder(norm_first):
    hub, ours = _hub_and_ours(norm_first)
    np.testing.assert_allclose(
        to_numpy(ours(TARGET, SOURCE)), to_numpy(hub(TARGET, SOURCE)), atol=1e-5
    )


def test_equals_keras_hub_decoder_only():
    hub, ours = _hub_and_ours(False, cross=False)
    np.testing.assert_allclose(to_numpy(ours(TARGET)), to_numpy(hub(TARGET)), atol=1e-5)


def test_equals_keras_hub_with_padding_on_real_tokens():
    """Padded target positions are the only ones allowed to differ (we mask
    padded queries, keras-hub does not)."""
    hub, ours = _hub_and_ours(False)
    kwargs = dict(decoder_padding_mask=TARGET_PADDING, encoder_padding_mask=SOURCE_PADDING)
    expected = to_numpy(hub(TARGET, SOURCE, **kwargs))
    got = to_numpy(ours(TARGET, SOURCE, **kwargs))
    np.testing.assert_allclose(got[TARGET_PADDING], expected[TARGET_PADDING], atol=1e-5)


def test_encoder_padding_hides_padded_source():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    changed = SOURCE.copy()
    changed[1, 4:] = 50.0
    a = block(TARGET, SOURCE, encoder_padding_mask=SOURCE_PADDING)
    b = block(TARGET, changed, encoder_padding_mask=SOURCE_PADDING)
    np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-5)


def test_future_targets_do_not_leak():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    changed = TARGET.copy()
    changed[:, 2:] = RNG.normal(size=changed[:, 2:].shape)
    a = to_numpy(block(TARGET, SOURCE))
    b = to_numpy(block(changed, SOURCE))
    np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-5)


def _decode_step_by_step(block, target, source, compiled):
    length = target.shape[1]
    cross_cache = block.compute_cross_attention_cache(source)

    def run():
        cache = block.get_initial_cache(target.shape[0], length)

        def body(i, cache, outputs):
            step = ops.slice(target, (0, i, 0), (target.shape[0], 1, target.shape[2]))
            out, cache, _ = block(
                step, source, self_attention_cache=cache,
                cross_attention_cache=cross_cache, cache_index=i,
            )
            outputs = ops.slice_update(outputs, (0, i, 0), out)
            return i + 1, cache, outputs

        _, _, outputs = ops.while_loop(
            lambda i, c, o: i < length,
            body,
            (ops.convert_to_tensor(0), cache, ops.zeros_like(target)),
        )
        return outputs

    return backend_utils.compiled(run)() if compiled else run()


@pytest.mark.parametrize(
    "scheme,kv_heads", [(None, None), ("rotary", 1), ("relative", None), ("alibi", 2)]
)
def test_cached_decoding_equals_full_pass(scheme, kv_heads):
    block = TransformerDecoderBlock(
        num_heads=4, intermediate_dim=32, position_scheme=scheme,
        num_key_value_heads=kv_heads,
    )
    full = block(TARGET, SOURCE)
    stepped = _decode_step_by_step(block, TARGET, SOURCE, compiled=True)
    np.testing.assert_allclose(to_numpy(stepped), to_numpy(full), atol=1e-5)


def test_cached_decoder_only_eager():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32, norm_first=True)
    full = to_numpy(block(TARGET))
    cache = block.get_initial_cache(2, 5)
    for i in range(5):
        out, cache = block(TARGET[:, i : i + 1], self_attention_cache=cache, cache_index=i)
        np.testing.assert_allclose(to_numpy(out)[:, 0], full[:, i], atol=1e-5)


def test_cached_scores_cover_the_cache():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    block(TARGET, SOURCE)
    cache = block.get_initial_cache(2, 9)
    cross = block.compute_cross_attention_cache(SOURCE)
    out, scores, cache, cross = block(
        TARGET[:, :1], SOURCE, self_attention_cache=cache, cross_attention_cache=cross,
        cache_index=0, return_attention_scores=True,
    )
    assert tuple(scores["self_attention"].shape) == (2, 2, 1, 9)
    assert tuple(scores["cross_attention"].shape) == (2, 2, 1, 7)
    np.testing.assert_allclose(to_numpy(scores["self_attention"])[..., 1:], 0.0)


def test_symbolic_cached_call_structure():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    step = keras.Input((1, 16))
    source = keras.Input((7, 16))
    cache = (keras.Input((9, 2, 8)), keras.Input((9, 2, 8)))
    out, new_cache = block(step, source, self_attention_cache=cache, cache_index=0)
    assert tuple(out.shape) == (None, 1, 16)
    assert [tuple(c.shape) for c in new_cache] == [(None, 9, 2, 8)] * 2


def test_cross_attention_block_requires_encoder_sequence():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    block(TARGET, SOURCE)
    with pytest.raises(ValueError, match="`encoder_sequence`.*encoder_sequence=None"):
        block(TARGET)


def test_decoder_only_block_has_no_cross_cache():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    block(TARGET)
    with pytest.raises(ValueError, match="decoder-only block"):
        block.compute_cross_attention_cache(SOURCE)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_heads": -1, "intermediate_dim": 8}, "`num_heads`.*num_heads=-1"),
        ({"num_heads": 2, "intermediate_dim": 2.5}, "`intermediate_dim`.*2.5"),
        ({"num_heads": 2, "intermediate_dim": 8, "key_dim": 0}, "`key_dim`.*key_dim=0"),
        ({"num_heads": 2, "intermediate_dim": 8, "norm_first": "yes"}, "`norm_first`"),
        ({"num_heads": 2, "intermediate_dim": 8, "position_scheme": "sinusoidal"}, "`position_scheme`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        TransformerDecoderBlock(**kwargs)


def test_invalid_encoder_rank():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=8)
    with pytest.raises(ValueError, match="`encoder_sequence`.*rank-3"):
        block(TARGET, SOURCE[:, 0])
