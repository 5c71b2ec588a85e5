"""Attention weights of built models and their heat-map PNGs."""

import keras
import matplotlib.image
import numpy as np
import pytest

import keras_attention as ka
from keras_attention.visualization import attention_layer_names
from keras_attention.visualization import attention_scores
from keras_attention.visualization import plot_attention
from keras_attention.visualization import plot_model_attention

SMALL = dict(num_layers=2, hidden_dim=8, num_heads=2, intermediate_dim=16)
SOURCE = np.array([[5, 6, 7, 8, 0, 0], [9, 10, 0, 0, 0, 0]], "int32")  # S = 6
TARGET = np.array([[2, 11, 12, 0], [2, 13, 14, 15]], "int32")  # T = 4


def _translator(**kwargs):
    return ka.models.transformer_translator(
        vocabulary_size=20, sequence_length=8, dropout=0.0, **{**SMALL, **kwargs}
    )


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def _reference_weights(attention, queries, keys, key_mask):
    """softmax(q k^T / sqrt(D)) in NumPy with an attention layer's query and
    key projections; masked keys get 0: `(B, H, T, S)`."""
    q = np.einsum("btf,fnh->btnh", queries, np.asarray(attention.query_dense.kernel))
    q = q + np.asarray(attention.query_dense.bias)
    k = np.einsum("bsf,fnh->bsnh", keys, np.asarray(attention.key_dense.kernel))
    k = k + np.asarray(attention.key_dense.bias)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    return _softmax(np.where(key_mask[:, None, None, :], logits, -np.inf))


def _check_rows(weights, query_mask, key_mask, causal=False):
    """Real query rows sum to 1 over real keys; padded keys (and the future) get 0."""
    batch, heads, queries, keys = weights.shape
    allowed = np.broadcast_to(key_mask[:, None, None, :], weights.shape).copy()
    if causal:
        allowed &= np.tril(np.ones((queries, keys), bool))[None, None]
    assert np.all(weights[~allowed] == 0)
    real_rows = np.broadcast_to(query_mask[:, None, :], (batch, heads, queries))
    np.testing.assert_allclose(weights.sum(-1)[real_rows], 1.0, atol=1e-5)


def test_translator_scores_shapes_and_masks():
    model = _translator()
    scores = attention_scores(model, {"source_ids": SOURCE, "target_ids": TARGET})
    assert list(scores) == [
        "encoder_block_0/self_attention",
        "encoder_block_1/self_attention",
        "decoder_block_0/self_attention",
        "decoder_block_0/cross_attention",
        "decoder_block_1/self_attention",
        "decoder_block_1/cross_attention",
    ]
    assert attention_layer_names(model) == list(scores)
    source_mask, target_mask = SOURCE != 0, TARGET != 0
    for name, weights in scores.items():
        if name.startswith("encoder"):
            assert weights.shape == (2, 2, 6, 6)
            _check_rows(weights, source_mask, source_mask)
        elif name.endswith("cross_attention"):
            assert weights.shape == (2, 2, 4, 6)  # T != S
            _check_rows(weights, target_mask, source_mask)
        else:
            assert weights.shape == (2, 2, 4, 4)
            _check_rows(weights, target_mask, target_mask, causal=True)


@pytest.mark.parametrize("kernel,options", [
    ("performer", None), ("linformer", {"sequence_length": 8, "projection_dim": 4})])
def test_kernels_without_weights_leave_their_layers_out(tmp_path, kernel, options):
    # A translator with such an encoder keeps the decoder's maps, computed
    # on the encoder output of the model itself: the cross-attention equals
    # softmax over the keys the model's own logits attend.
    model = _translator(attention_kernel=kernel, attention_kernel_options=options)
    inputs = {"source_ids": SOURCE, "target_ids": TARGET}
    names = attention_layer_names(model)
    assert names == ["decoder_block_0/self_attention", "decoder_block_0/cross_attention",
                     "decoder_block_1/self_attention", "decoder_block_1/cross_attention"]
    scores = attention_scores(model, inputs)
    assert list(scores) == names
    _check_rows(scores["decoder_block_0/cross_attention"], TARGET != 0, SOURCE != 0)
    # Same encoder output as the model: the cross-attention of block 0 is
    # softmax(q k^T / sqrt(D)) on the encoder output of the model's own pass.
    probe = keras.Model(model.inputs, model.get_layer("encoder_block_1").output)
    encoded = np.asarray(probe(inputs))
    block = model.get_layer("decoder_block_0")
    target = np.asarray(model.get_layer("embedding" if model.arguments["share_embeddings"]
                                        else "target_embedding")(TARGET))
    hidden = np.asarray(block.self_attention_layer_norm(
        target + np.asarray(block.self_attention(target, target, use_causal_mask=True,
                                                 query_mask=TARGET != 0,
                                                 value_mask=TARGET != 0))))
    expected = _reference_weights(block.cross_attention, hidden, encoded, SOURCE != 0)
    expected = expected * (TARGET != 0)[:, None, :, None]  # padded queries: 0
    np.testing.assert_allclose(scores["decoder_block_0/cross_attention"], expected, atol=1e-5)
    name, _ = plot_model_attention(model, inputs, tmp_path / "t.png", head=0)
    assert name == "decoder_block_1/cross_attention"
    # A model whose every layer forms none has no map.
    classifier = ka.models.transformer_classifier(
        vocabulary_size=20, sequence_length=8, num_classes=2, dropout=0.0,
        attention_kernel=kernel, attention_kernel_options=options, **SMALL)
    assert attention_layer_names(classifier) == [] == list(attention_scores(classifier, SOURCE))
    with pytest.raises(ValueError, match=f"forms attention weights; its attention kernel "
                       f"\\('{kernel}'\\) forms none token by token"):
        plot_model_attention(classifier, SOURCE, tmp_path / "c.png")


def test_first_encoder_layer_matches_numpy_reference():
    """Post-LN block 0 attends over the embedding output: softmax(QK^T/sqrt(D))."""
    model = ka.models.transformer_classifier(
        vocabulary_size=20, sequence_length=8, num_classes=3, dropout=0.0, **SMALL
    )
    ids = np.array([[3, 7, 9, 4, 0], [5, 6, 0, 0, 0]], "int32")
    weights = attention_scores(model, ids)["encoder_block_0/self_attention"]
    x = np.asarray(model.get_layer("embedding")(ids))  # (B, T, E)
    attention = model.get_layer("encoder_block_0").self_attention
    expected = _reference_weights(attention, x, x, ids != 0)
    real = ids != 0
    for b in range(2):
        np.testing.assert_allclose(
            weights[b][:, real[b]], expected[b][:, real[b]], atol=1e-5
        )


def test_causal_lm_and_masked_lm_scores():
    ids = np.array([[5, 6, 7, 0]], "int32")
    lm = ka.models.causal_lm(vocabulary_size=20, sequence_length=8, **SMALL)
    weights = attention_scores(lm, {"token_ids": ids})["decoder_block_1/self_attention"]
    _check_rows(weights, ids != 0, ids != 0, causal=True)
    mlm = ka.models.masked_lm(vocabulary_size=20, sequence_length=8, **SMALL)
    weights = attention_scores(mlm, ids)["encoder_block_1/self_attention"]
    _check_rows(weights, ids != 0, ids != 0)
    assert np.any(np.triu(weights[0, 0, :3, :3], 1) > 0)  # bidirectional


def test_plot_attention_writes_png_with_tokens(tmp_path):
    weights = np.random.default_rng(0).random((3, 2, 4))
    path = tmp_path / "sub" / "map.png"
    figure = plot_attention(weights, path, ["a", "b"], ["w", "x", "y", "z"], title="t")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50
    maps = [ax for ax in figure.axes if ax.images]
    assert len(maps) == 3  # every head side by side
    assert [t.get_text() for t in maps[0].get_xticklabels()] == ["w", "x", "y", "z"]
    assert [t.get_text() for t in maps[0].get_yticklabels()] == ["a", "b"]
    one = plot_attention(weights, tmp_path / "one.png", head=1)
    (shown,) = [ax for ax in one.axes if ax.images]
    np.testing.assert_allclose(shown.images[0].get_array(), weights[1])
    mean = plot_attention(weights, tmp_path / "mean.png", head="mean")
    (shown,) = [ax for ax in mean.axes if ax.images]
    np.testing.assert_allclose(shown.images[0].get_array(), weights.mean(0), rtol=1e-6)


def test_plot_model_attention_crops_padding_and_picks_layers(tmp_path):
    model = _translator()
    inputs = {"source_ids": SOURCE, "target_ids": TARGET}
    name, figure = plot_model_attention(model, inputs, tmp_path / "a.png", head=0)
    assert name == "decoder_block_1/cross_attention"
    (ax,) = [ax for ax in figure.axes if ax.images]
    assert ax.images[0].get_array().shape == (3, 4)  # real target x source tokens
    name, figure = plot_model_attention(
        model, inputs, tmp_path / "b.png", layer=0, index=1,
        query_tokens=["p", "q"], key_tokens=["p", "q"],
    )
    assert name == "encoder_block_0/self_attention"
    name, _ = plot_model_attention(
        model, inputs, tmp_path / "c.png", layer="decoder_block_0/self_attention"
    )
    assert (tmp_path / "c.png").stat().st_size > 0


def test_errors(tmp_path):
    model = _translator()
    inputs = {"source_ids": SOURCE, "target_ids": TARGET}
    with pytest.raises(ValueError, match="`model`, expected a model built by"):
        attention_scores(object(), SOURCE)
    with pytest.raises(ValueError, match="`inputs`, expected a dict with 'source_ids'"):
        attention_scores(model, SOURCE)
    with pytest.raises(ValueError, match=r"`weights`, expected a \(T, S\)"):
        plot_attention(np.zeros(3), tmp_path / "x.png")
    with pytest.raises(ValueError, match="`query_tokens`, expected 2 tokens"):
        plot_attention(np.zeros((2, 3)), tmp_path / "x.png", query_tokens=["a"])
    with pytest.raises(ValueError, match="`key_tokens`, expected 3 tokens"):
        plot_attention(np.zeros((2, 3)), tmp_path / "x.png", key_tokens=["a"])
    with pytest.raises(ValueError, match="`head`, expected None.*head=5"):
        plot_attention(np.zeros((2, 2, 3)), tmp_path / "x.png", head=5)
    with pytest.raises(ValueError, match="`layer`, expected a name in .* layer=9"):
        plot_model_attention(model, inputs, tmp_path / "x.png", layer=9)
    with pytest.raises(ValueError, match="`layer`, expected one of .*'nope'"):
        plot_model_attention(model, inputs, tmp_path / "x.png", layer="nope")
    with pytest.raises(ValueError, match="`index`, expected an example of the batch of 2"):
        plot_model_attention(model, inputs, tmp_path / "x.png", index=2)
