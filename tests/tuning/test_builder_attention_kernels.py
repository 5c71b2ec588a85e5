"""The builders' `attention_kernel`: what the tuners search reaches the blocks.

Independent references: a `"local"` kernel whose window (128) covers the
whole sequence equals exact attention with the same weights; the layer
classes in the built graph; a reloaded `.keras` file (safe mode) gives the
same outputs; greedy decoding's first token is the argmax of a full pass.
"""

import os
import sys

import keras
import numpy as np
import pytest

import keras_attention as ka
from keras_attention.layers.attention import BigBirdAttention
from keras_attention.layers.attention import LinformerAttention
from keras_attention.layers.attention import LocalAttention
from keras_attention.layers.attention import MultiHeadAttention
from keras_attention.layers.attention import PerformerAttention

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "generation"))
import reference_decoding as ref  # noqa: E402

IDS = np.array([[3, 4, 5, 6, 0, 0], [7, 8, 9, 2, 3, 4]], dtype="int32")
TARGET = np.array([[1, 5, 6, 0], [1, 7, 8, 9]], dtype="int32")
SMALL = dict(vocabulary_size=12, sequence_length=8, num_layers=1, hidden_dim=8,
             num_heads=2, intermediate_dim=16, dropout=0.0)


def _classifier(kernel, **kwargs):
    return ka.models.transformer_classifier(
        num_classes=3, pooling="mean", attention_kernel=kernel, **SMALL, **kwargs)


def _fit_save_reload(model, x, y, tmp_path):
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded(x), model(x), atol=1e-6)
    assert reloaded.arguments == model.arguments
    return reloaded


@pytest.mark.parametrize("kernel,layer_cls", [
    ("performer", PerformerAttention), ("local", LocalAttention)])
def test_classifier_kernel_builds_fits_and_reloads(tmp_path, kernel, layer_cls):
    keras.utils.set_random_seed(0)
    model = _classifier(kernel, position_scheme="rotary")
    block = model.get_layer("encoder_block_0")
    assert block.attention_kernel == kernel
    assert type(block.self_attention) is layer_cls
    reloaded = _fit_save_reload(model, IDS, np.array([0, 2]), tmp_path)
    assert type(reloaded.get_layer("encoder_block_0").self_attention) is layer_cls


def test_classifier_kernel_options_reach_every_block_and_reload(tmp_path):
    # Linformer needs its static key length (`sequence_length`); the
    # options ride in the builder arguments through the .keras file.
    keras.utils.set_random_seed(0)
    options = {"sequence_length": 8, "projection_dim": 4}
    model = ka.models.transformer_classifier(
        num_classes=3, pooling="mean", attention_kernel="linformer",
        attention_kernel_options=options, **{**SMALL, "num_layers": 2})
    for i in range(2):
        attention = model.get_layer(f"encoder_block_{i}").self_attention
        assert type(attention) is LinformerAttention
        assert attention.projection_dim == 4
    assert model.arguments["attention_kernel_options"] == options
    reloaded = _fit_save_reload(model, IDS, np.array([0, 2]), tmp_path)
    assert reloaded.get_layer("encoder_block_1").self_attention.projection_dim == 4


@pytest.mark.parametrize("options,first_seed", [(None, 0), ({"pattern_seed": 5}, 5)])
def test_big_bird_blocks_draw_their_own_random_blocks(tmp_path, options, first_seed):
    # Each layer of the BigBird paper's model draws its own random blocks:
    # block i gets pattern_seed + i, recorded in its config, kept on reload.
    keras.utils.set_random_seed(0)
    options = None if options is None else {**options, "block_size": 1}
    model = ka.models.transformer_classifier(
        num_classes=3, pooling="mean", attention_kernel="big_bird",
        attention_kernel_options=options or {"block_size": 1},
        **{**SMALL, "num_layers": 3})
    layers = [model.get_layer(f"encoder_block_{i}").self_attention for i in range(3)]
    assert [layer.pattern_seed for layer in layers] == [first_seed + i for i in range(3)]
    patterns = [layer.block_pattern(8, 8)[0] for layer in layers]
    assert not all(np.array_equal(patterns[0], p) for p in patterns[1:])
    assert model.arguments["attention_kernel_options"] == (options or {"block_size": 1})
    reloaded = _fit_save_reload(model, IDS, np.array([0, 2]), tmp_path)
    assert [reloaded.get_layer(f"encoder_block_{i}").self_attention.pattern_seed
            for i in range(3)] == [first_seed + i for i in range(3)]


def test_translator_kernel_options_reach_the_encoder_only():
    model = ka.models.transformer_translator(
        attention_kernel="local", attention_kernel_options={"window_size": 1}, **SMALL)
    assert model.get_layer("encoder_block_0").self_attention.window_size == 1
    decoder = model.get_layer("decoder_block_0")
    assert decoder.attention_kernel_options == {}
    assert type(decoder.self_attention) is MultiHeadAttention


def test_classifier_without_kernel_options_records_none():
    assert _classifier("local").arguments["attention_kernel_options"] is None


def test_local_kernel_with_a_window_over_everything_equals_dot_product():
    keras.utils.set_random_seed(0)
    exact = _classifier("dot_product", position_scheme="relative")
    local = _classifier("local", position_scheme="relative")
    local.set_weights(exact.get_weights())
    np.testing.assert_allclose(local(IDS), exact(IDS), atol=1e-5)


@pytest.mark.parametrize("kernel,options,layer_cls,scheme", [
    ("performer", {"num_random_features": 16}, PerformerAttention, "rotary"),
    ("local", {"window_size": 2}, LocalAttention, "rotary"),
    ("local", {"window_size": 1, "num_global_tokens": 2}, LocalAttention, "rotary"),
    ("local", {"window_size": 2}, LocalAttention, "alibi"),
    ("big_bird", {"block_size": 2, "num_global_blocks": 1, "num_random_blocks": 1},
     BigBirdAttention, "rotary"),
])
def test_causal_lm_kernel_decodes_with_its_cache(tmp_path, kernel, options, layer_cls,
                                                 scheme):
    # Generation runs the kernel's KV-cache path one token at a time; the
    # reference runs its whole-sequence path (prefix sums / blocks) on each
    # unpadded prefix (BigBird: of every length, padded to the pattern of
    # the model's sequence_length, the option causal_lm gives it). Local's
    # rolling cache wraps here (ALiBi through it: the decoder-block test
    # checks that bias numerically).
    keras.utils.set_random_seed(0)
    model = ka.models.causal_lm(
        attention_kernel=kernel, attention_kernel_options=options,
        position_scheme=scheme, **{**SMALL, "sequence_length": 12, "num_layers": 2})
    assert type(model.get_layer("decoder_block_1").self_attention) is layer_cls
    if kernel == "big_bird":
        options = {**options, "sequence_length": 12}
    assert model.arguments["attention_kernel_options"] == options
    model = _fit_save_reload(model, IDS[:, :-1], IDS[:, 1:], tmp_path)
    # Right-padded prompts of different lengths (the longer one past the
    # local window); each row against its own unpadded full passes.
    prompts = np.array([[3, 4, 5, 6, 7], [8, 9, 0, 0, 0]], dtype="int32")
    generator = ka.generation.CausalLMGenerator(model, jit_compile=False)
    generated = np.asarray(generator.greedy_search(prompts, max_new_tokens=4))
    np.testing.assert_array_equal(generated, ref.greedy_reference(model, prompts, 4))
    # Beam search reorders the caches (Performer's running states too).
    beams = [generator.beam_search(prompts, max_new_tokens=3, beam_width=2,
                                   use_cache=cached) for cached in (True, False)]
    np.testing.assert_array_equal(beams[0][0], beams[1][0])
    np.testing.assert_allclose(beams[0][1], beams[1][1], atol=1e-4)


def test_causal_lm_refuses_kernels_without_cached_decoding():
    with pytest.raises(ValueError, match=r"argument `attention_kernel`, expected "
                       r"one of \['dot_product', 'performer', 'local', 'big_bird'\] "
                       r"\(causal attention with a KV cache for generation\)"):
        ka.models.causal_lm(attention_kernel="linformer",
                            attention_kernel_options={"sequence_length": 8}, **SMALL)


def _masked_lm(kernel, **kwargs):
    return ka.models.masked_lm(attention_kernel=kernel, **SMALL, **kwargs)


def test_masked_lm_local_window_over_everything_equals_dot_product():
    keras.utils.set_random_seed(0)
    exact = _masked_lm("dot_product", position_scheme="rotary")
    local = _masked_lm("local", position_scheme="rotary")
    assert type(local.get_layer("encoder_block_0").self_attention) is LocalAttention
    local.set_weights(exact.get_weights())
    np.testing.assert_allclose(local(IDS), exact(IDS), atol=1e-5)
    assert exact.arguments["attention_kernel"] == "dot_product"
    assert exact.arguments["attention_kernel_options"] is None


def test_masked_lm_kernel_options_fit_and_reload(tmp_path):
    # One window position per side: a masked token's logits depend only on
    # its neighbours (one layer), checked by changing a distant token.
    keras.utils.set_random_seed(0)
    model = _masked_lm("local", attention_kernel_options={"window_size": 1})
    assert model.get_layer("encoder_block_0").self_attention.window_size == 1
    assert model.arguments["attention_kernel_options"] == {"window_size": 1}
    ids = np.array([[3, 4, 5, 6, 7, 8]], dtype="int32")
    changed = ids.copy()
    changed[0, 5] = 9
    before, after = np.asarray(model(ids)), np.asarray(model(changed))
    np.testing.assert_allclose(before[0, :4], after[0, :4], atol=1e-6)
    assert not np.allclose(before[0, 4:], after[0, 4:])
    labels = np.where(IDS > 0, IDS, 0)
    reloaded = _fit_save_reload(model, IDS, labels, tmp_path)
    assert reloaded.get_layer("encoder_block_0").self_attention.window_size == 1


def test_performer_builders_keep_residual_dropout():
    # The blocks default Performer's attention dropout to 0, so the
    # builders' shared `dropout` (0.1 by default) is residual dropout only.
    arguments = {**SMALL, "dropout": 0.1, "attention_kernel": "performer"}
    for model in (ka.models.masked_lm(**arguments),
                  ka.models.transformer_classifier(num_classes=2, **arguments)):
        block = model.get_layer("encoder_block_0")
        assert block.self_attention.dropout == 0.0
        assert block.self_attention_dropout.rate == 0.1


def test_masked_lm_kernel_errors():
    with pytest.raises(ValueError, match=r"'linformer' with its 'sequence_length' option"):
        _masked_lm("linformer")
    with pytest.raises(ValueError, match=r"the 'linformer' kernel takes no additive "
                       r"attention bias"):
        _masked_lm("linformer", position_scheme="alibi",
                   attention_kernel_options={"sequence_length": 8})


def test_translator_kernel_is_the_encoders_and_decoding_still_works(tmp_path):
    keras.utils.set_random_seed(0)
    model = ka.models.transformer_translator(attention_kernel="performer", **SMALL)
    assert type(model.get_layer("encoder_block_0").self_attention) is PerformerAttention
    decoder = model.get_layer("decoder_block_0")
    assert decoder.attention_kernel == "dot_product"
    assert type(decoder.cross_attention) is MultiHeadAttention
    inputs = {"source_ids": IDS, "target_ids": TARGET}
    model = _fit_save_reload(model, inputs, np.roll(TARGET, -1, axis=1), tmp_path)
    generator = ka.generation.Seq2SeqGenerator(model, start_token_id=1, jit_compile=False)
    tokens = np.asarray(generator.greedy_search(IDS, max_new_tokens=2))
    first = np.asarray(model({"source_ids": IDS, "target_ids": TARGET[:, :1]}))[:, 0, 1:]
    np.testing.assert_array_equal(tokens[:, 1], first.argmax(-1) + 1)  # id 0 never generated


@pytest.mark.parametrize("kernel,options,layer_cls", [
    ("performer", {"num_random_features": 16}, PerformerAttention),
    ("local", {"window_size": 1}, LocalAttention),
    ("big_bird", {"block_size": 1, "num_global_blocks": 1, "num_random_blocks": 1},
     BigBirdAttention),
])
def test_translator_decoder_kernel_decodes_with_its_cache(tmp_path, kernel, options,
                                                          layer_cls):
    # The decoder's self-attention takes the kernel, its cross-attention
    # stays exact; greedy decoding over the self- and cross-attention caches
    # equals greedy decoding by whole-sequence passes, row by row.
    keras.utils.set_random_seed(0)
    model = ka.models.transformer_translator(
        decoder_attention_kernel=kernel, decoder_attention_kernel_options=options,
        **{**SMALL, "num_layers": 2})
    for i in range(2):
        decoder = model.get_layer(f"decoder_block_{i}")
        assert type(decoder.self_attention) is layer_cls
        assert type(decoder.cross_attention) is MultiHeadAttention
    assert type(model.get_layer("encoder_block_0").self_attention) is MultiHeadAttention
    if kernel == "big_bird":  # the model's length fixes the decoder's pattern
        options = {**options, "sequence_length": SMALL["sequence_length"]}
    assert model.arguments["decoder_attention_kernel_options"] == options
    inputs = {"source_ids": IDS, "target_ids": TARGET}
    model = _fit_save_reload(model, inputs, np.roll(TARGET, -1, axis=1), tmp_path)
    generator = ka.generation.Seq2SeqGenerator(model, start_token_id=1, jit_compile=False)
    generated = np.asarray(generator.greedy_search(IDS, max_new_tokens=4))
    prompts = np.ones((2, 1), "int32")  # the start token
    np.testing.assert_array_equal(generated, ref.greedy_reference(model, prompts, 4,
                                                                  sources=IDS))


def test_invalid_decoder_kernels():
    with pytest.raises(ValueError, match=r"argument `decoder_attention_kernel`, expected one "
                       r"of \['dot_product', 'performer', 'local', 'big_bird'\] \(causal "
                       r"attention with a KV cache for generation\)\. Received: "
                       r"decoder_attention_kernel='linformer'"):
        ka.models.transformer_translator(
            decoder_attention_kernel="linformer",
            decoder_attention_kernel_options={"sequence_length": 8}, **SMALL)
    with pytest.raises(ValueError, match=r"argument `decoder_attention_kernel_options` for "
                       r"attention_kernel='local'.*Received: window_size=0"):
        ka.models.transformer_translator(
            decoder_attention_kernel="local",
            decoder_attention_kernel_options={"window_size": 0}, **SMALL)
    with pytest.raises(ValueError, match=r"incompatible arguments `decoder_attention_kernel` "
                       r"and `position_scheme`: the 'performer' kernel"):
        ka.models.transformer_translator(
            decoder_attention_kernel="performer", position_scheme="relative", **SMALL)


def test_invalid_kernels():
    with pytest.raises(ValueError, match=r"argument `attention_kernel`, expected one of "
                       r"\['dot_product', 'performer', 'local', 'big_bird'\], or 'linformer' "
                       r"with its 'sequence_length' option \(its sequence projections need "
                       r"a static key length; .*\)\. Received: attention_kernel='linformer', "
                       r"attention_kernel_options=\{'projection_dim': 4\}"):
        _classifier("linformer", attention_kernel_options={"projection_dim": 4})
    with pytest.raises(TypeError, match=r"argument `attention_kernel_options`, expected "
                       r"None or a dict"):
        _classifier("local", attention_kernel_options=4)
    with pytest.raises(ValueError, match=r"`attention_kernel_options` for "
                       r"attention_kernel='local'.*Received: window_size=-1"):
        ka.models.transformer_translator(
            attention_kernel="local", attention_kernel_options={"window_size": -1}, **SMALL)
    with pytest.raises(ValueError, match=r"argument `attention_kernel`, expected one of "
                       r".*Received: attention_kernel='flash'"):
        ka.models.transformer_translator(attention_kernel="flash", **SMALL)
    with pytest.raises(ValueError, match=r"incompatible arguments `attention_kernel` and "
                       r"`position_scheme`: the 'performer' kernel takes no additive "
                       r"attention bias.*Received: attention_kernel='performer', "
                       r"position_scheme='alibi'"):
        _classifier("performer", position_scheme="alibi")
