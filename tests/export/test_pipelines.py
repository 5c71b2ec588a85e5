"""Serving pipelines: raw strings in, the same predictions in process, in a
fresh TensorFlow-only process and in the eyes of `saved_model_cli`."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_attention as ka
from keras_attention.data import RESERVED_TOKENS
from keras_attention.data import WordPieceTokenizer
from keras_attention.data import fit_tokenizer
from keras_attention.data import translation_pairs
from keras_attention.data import translation_tokenizers
from keras_attention.export import ClassifierPipeline
from keras_attention.export import FillMaskPipeline
from keras_attention.export import GeneratorPipeline
from keras_attention.export import TranslatorPipeline

TINY = dict(num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16)
WORDS = "good fun great dull bad slow the cat sat on mat".split()
# Batch of 7: ordinary texts, an empty string and one far longer than any
# tokenizer's sequence_length.
CLASSIFIER_TEXTS = ["good fun", "dull and slow", "the cat", "", "great " * 50, "bad", "x"]
PROMPTS = ["the cat ", "", "o" * 60, "sat on", "mat", "t", "the mat sat on the cat"]


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def pipelines():
    keras.utils.set_random_seed(7)
    corpus = [" ".join(np.random.default_rng(i).choice(WORDS, 6)) for i in range(40)]

    word_tokenizer = fit_tokenizer(corpus, vocabulary_size=60, sequence_length=8)
    classifier = ka.models.transformer_classifier(
        vocabulary_size=word_tokenizer.vocabulary_size, sequence_length=8,
        num_classes=3, pooling="mean", **TINY)

    pairs = translation_pairs(64, seed=3)
    source_tokenizer, target_tokenizer = translation_tokenizers(
        pairs, target_kind="character", vocabulary_size=200)
    translator = ka.models.transformer_translator(
        vocabulary_size=source_tokenizer.vocabulary_size,
        target_vocabulary_size=target_tokenizer.vocabulary_size,
        sequence_length=24, **TINY)

    char_tokenizer = fit_tokenizer(corpus, kind="character", sequence_length=16)
    language_model = ka.models.causal_lm(
        vocabulary_size=char_tokenizer.vocabulary_size, sequence_length=16, **TINY)

    masked_lm = ka.models.masked_lm(
        vocabulary_size=word_tokenizer.vocabulary_size, sequence_length=8, **TINY)
    return {
        "classifier": ClassifierPipeline(classifier, word_tokenizer, ["neg", "pos", "meh"]),
        "translator": TranslatorPipeline(
            translator, source_tokenizer, target_tokenizer, beam_width=3, batch_chunk=4),
        "generator": GeneratorPipeline(
            language_model, char_tokenizer, prompt_length=8,
            start_token_id=char_tokenizer.end_token_id, batch_chunk=4),
        "fill_mask": FillMaskPipeline(masked_lm, word_tokenizer),
        "sources": [source for source, _ in pairs[:5]] + ["", "march " * 40],
    }


@pytest.fixture(scope="module")
def exports(pipelines, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {
        name: pipelines[name].export(root / name, version=1)
        for name in ("classifier", "translator", "generator", "fill_mask")
    }


def _requests(pipelines):
    """Input name -> batch of 7, per export."""
    return {
        "classifier": {"text": CLASSIFIER_TEXTS},
        "translator": {"source": pipelines["sources"]},
        "generator": {"prompt": PROMPTS, "max_new_tokens": [5, 3, 8, 0, 100, 1, 6]},
        "fill_mask": {"text": ["the [MASK] sat", "[mask] on [MASK][MASK]", "",
                               "good " * 30 + "[MASK]", "cat [MASK]", "bad", "x [MASK] y"]},
    }


SERVE_ALL = r"""
import json, sys
import tensorflow as tf
exports, requests = json.loads(sys.argv[1]), json.loads(sys.argv[2])
results = {}
for name, path in exports.items():
    serve = tf.saved_model.load(path).signatures["serving_default"]
    for size in (1, 7):
        inputs = {k: tf.constant(v[:size]) for k, v in requests[name].items()}
        out = serve(**inputs)
        results[f"{name}/{size}"] = {
            k: (v.numpy().astype(str).tolist() if v.dtype == tf.string else v.numpy().tolist())
            for k, v in out.items()
        }
results["imported"] = sorted(m for m in sys.modules if m.startswith(("keras_attention", "tensorflow_text")))
print(json.dumps(results))
"""


def test_fresh_tensorflow_process_serves_the_same_predictions(pipelines, exports):
    requests = _requests(pipelines)
    result = subprocess.run(
        [sys.executable, "-c", SERVE_ALL, json.dumps(exports), json.dumps(requests)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served.pop("imported") == []
    for name, request in requests.items():
        for size in (1, 7):
            expected = pipelines[name](*[v[:size] for v in request.values()])
            got = served[f"{name}/{size}"]
            assert sorted(got) == sorted(expected)
            for key, value in expected.items():
                if value.dtype == object:
                    assert np.char.decode(value.astype(bytes)).tolist() == got[key], key
                else:
                    np.testing.assert_allclose(got[key], value, atol=1e-5, err_msg=key)
                assert len(got[key]) == size


def test_saved_model_cli_lists_string_inputs(exports):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = {
        name: subprocess.Popen(
            [cli, "show", "--dir", path, "--all"], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env)
        for name, path in exports.items()
    }
    inputs = {"classifier": "text", "translator": "source", "generator": "prompt",
              "fill_mask": "text"}
    shown = {}
    for name, process in processes.items():
        shown[name], stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
        assert "signature_def['serving_default']" in shown[name]
        assert f"inputs['{inputs[name]}'] tensor_info:\n        dtype: DT_STRING" in shown[name]
    assert "inputs['max_new_tokens'] tensor_info:\n        dtype: DT_INT32" in shown["generator"]


def test_classifier_matches_the_keras_model_and_truncates(pipelines):
    pipeline = pipelines["classifier"]
    out = pipeline(CLASSIFIER_TEXTS)
    ids = pipeline.tokenizer(tf.constant(CLASSIFIER_TEXTS))
    expected = _softmax(np.asarray(pipeline.model.predict(ids, verbose=0), "float64"))
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    np.testing.assert_array_equal(out["label_ids"], expected.argmax(-1))
    names = np.array(["neg", "pos", "meh"])[expected.argmax(-1)]
    assert [n.decode() for n in out["label_names"]] == names.tolist()
    # Longer than sequence_length=8: the first 8 tokens decide.
    long, prefix = pipeline(["good fun " * 20 + "dull"]), pipeline(["good fun " * 4])
    np.testing.assert_allclose(long["probabilities"], prefix["probabilities"], atol=1e-6)


def test_translator_matches_the_generator_beam_and_greedy(pipelines):
    pipeline = pipelines["translator"]
    sources = pipelines["sources"]
    out = pipeline(sources)
    source_ids = pipeline.source_tokenizer(tf.constant(sources)).numpy()
    length = pipeline.target_tokenizer.sequence_length
    generator = ka.generation.Seq2SeqGenerator(
        pipeline.model, start_token_id=2, end_token_id=3, jit_compile=False)
    tokens, scores = generator.beam_search(
        source_ids, max_new_tokens=length - 1, beam_width=3, length_penalty=0.6)
    expected = pipeline.target_tokenizer.detokenize(tokens).numpy()
    assert out["translations"].tolist() == expected.tolist()
    np.testing.assert_allclose(out["scores"], scores, atol=1e-5)
    greedy = TranslatorPipeline(pipeline.model, pipeline.source_tokenizer,
                                pipeline.target_tokenizer, strategy="greedy")
    tokens = generator.greedy_search(source_ids, max_new_tokens=length - 1)
    assert greedy(sources)["translations"].tolist() == (
        pipeline.target_tokenizer.detokenize(tokens).numpy().tolist())


def test_generator_matches_cached_greedy_search_and_budgets(pipelines):
    pipeline = pipelines["generator"]
    tokenizer = pipeline.tokenizer
    budgets = [5, 3, 8, 0, 100, 1, 6]
    out = pipeline(PROMPTS, budgets)["continuations"]
    prompt_ids = pipeline.prompt_ids(tf.constant(PROMPTS)).numpy()  # (7, 8)
    assert np.all(prompt_ids[:, 0] == tokenizer.end_token_id)  # the start token
    generator = ka.generation.CausalLMGenerator(
        pipeline.model, end_token_id=tokenizer.end_token_id, jit_compile=False)
    tokens = generator.greedy_search(prompt_ids, max_new_tokens=8)  # (7, 16)
    lengths = (prompt_ids != 0).sum(1)
    for row, budget in enumerate(budgets):
        room = 16 - lengths[row]
        new = tokens[row, lengths[row] : lengths[row] + min(budget, room, 8)]
        expected = tokenizer.detokenize(new[None]).numpy()[0]
        if budget <= 8:
            assert out[row] == expected, row
        else:  # clipped to the room left in the 16 positions
            assert out[row].startswith(expected)
    assert out[3] == b""  # max_new_tokens=0
    # A scalar budget applies to every prompt.
    assert pipeline(PROMPTS[:2], 3)["continuations"].tolist() == (
        pipeline(PROMPTS[:2], [3, 3])["continuations"].tolist())


def test_generator_keeps_the_last_tokens_of_a_long_prompt(pipelines):
    pipeline = pipelines["generator"]
    text = "the cat sat on the mat good fun"
    ids = pipeline.prompt_ids(tf.constant([text, ""])).numpy()
    expected = pipeline.tokenizer.tokenize_ragged(tf.constant(text[-7:])).numpy()
    np.testing.assert_array_equal(ids[0], [3, *expected])
    np.testing.assert_array_equal(ids[1], [3, 0, 0, 0, 0, 0, 0, 0])
    assert pipeline([text], [4])["continuations"].tolist() == (
        pipeline([text[-7:]], [4])["continuations"].tolist())


def test_sampling_with_a_seed_is_reproducible(pipelines):
    base = pipelines["generator"]
    sampler = GeneratorPipeline(base.model, base.tokenizer, prompt_length=8,
                                strategy="sample", top_k=5, temperature=0.7, seed=3)
    first = sampler(PROMPTS, 6)["continuations"]
    assert first.tolist() == sampler(PROMPTS, 6)["continuations"].tolist()
    assert first.shape == (7,)
    other = GeneratorPipeline(base.model, base.tokenizer, prompt_length=8,
                              strategy="sample", top_k=5, temperature=0.7, seed=4)
    assert other(PROMPTS, 6)["continuations"].shape == (7,)


def test_fill_mask_ids_and_predictions(pipelines):
    pipeline = pipelines["fill_mask"]
    tokenizer = pipeline.tokenizer
    the, cat, sat = (tokenizer.token_to_id(w) for w in ("the", "cat", "sat"))
    assert min(the, cat, sat) >= len(RESERVED_TOKENS)
    texts = ["the [MASK] sat", "[mask][MASK]", "", "cat [MASK]", "the cat " * 10 + "[MASK]"]
    ids = pipeline.token_ids(tf.constant(texts)).numpy()
    np.testing.assert_array_equal(ids[:4], [
        [the, 4, sat, 0, 0, 0, 0, 0],
        [4, 4, 0, 0, 0, 0, 0, 0],
        [0] * 8,
        [cat, 4, 0, 0, 0, 0, 0, 0],
    ])
    assert 4 not in ids[4]  # the mask past the truncation is dropped
    out = pipeline(texts)
    logits = np.asarray(pipeline.model.predict(ids, verbose=0), "float64")[..., 5:]
    probabilities = _softmax(logits)  # over the non-reserved tokens
    vocabulary = np.array(tokenizer.get_vocabulary()[5:])
    for row in range(len(texts)):
        positions = np.flatnonzero(ids[row] == 4)
        best = probabilities[row, positions].argmax(-1)
        got = [t.decode() for t in out["mask_tokens"][row]]
        assert got[: len(positions)] == vocabulary[best].tolist()
        assert all(t == "" for t in got[len(positions):])
        np.testing.assert_allclose(
            out["mask_probabilities"][row, : len(positions)],
            probabilities[row, positions].max(-1), atol=1e-5)
    filled = ids[0].copy()
    filled[1] = 5 + probabilities[0, 1].argmax()
    assert out["filled"][0] == tokenizer.detokenize(filled[None]).numpy()[0]


def test_invalid_arguments(pipelines):
    classifier = pipelines["classifier"]
    translator = pipelines["translator"]
    generator = pipelines["generator"]
    tokenizer = classifier.tokenizer
    big = WordPieceTokenizer(list(RESERVED_TOKENS) + [f"w{i}" for i in range(300)], 8)
    with pytest.raises(ValueError, match="`model`, expected a keras.Model"):
        ClassifierPipeline("model", tokenizer, ["a"])
    with pytest.raises(ValueError, match="`tokenizer`, expected a WordPieceTokenizer"):
        ClassifierPipeline(classifier.model, "tok", ["a", "b", "c"])
    with pytest.raises(ValueError, match="`label_names`, expected a non-empty list of unique"):
        ClassifierPipeline(classifier.model, tokenizer, ["a", "a", "b"])
    with pytest.raises(ValueError, match=r"`label_names`, expected one name per model output \(3\)"):
        ClassifierPipeline(classifier.model, tokenizer, ["a", "b"])
    with pytest.raises(ValueError, match="`model`, expected a model built by `keras_attention.models.transformer_translator`"):
        TranslatorPipeline(classifier.model, translator.source_tokenizer,
                           translator.target_tokenizer)
    with pytest.raises(ValueError, match="`target_tokenizer`, expected add_start_token=True"):
        TranslatorPipeline(translator.model, translator.source_tokenizer,
                           translator.source_tokenizer)
    long_target = fit_tokenizer(["2005-03-03"], kind="character", sequence_length=40,
                                add_start_token=True, add_end_token=True)
    with pytest.raises(ValueError, match=r"`target_tokenizer.sequence_length`, expected at most the model's sequence_length=24"):
        TranslatorPipeline(translator.model, translator.source_tokenizer, long_target)
    with pytest.raises(ValueError, match="`source_tokenizer`, expected at most the model's"):
        TranslatorPipeline(translator.model, big, translator.target_tokenizer)
    kwargs = dict(model=translator.model, source_tokenizer=translator.source_tokenizer,
                  target_tokenizer=translator.target_tokenizer)
    for bad, match in [
        (dict(strategy="top"), "`strategy`"),
        (dict(beam_width=0), "`beam_width`"),
        (dict(length_penalty=-1.0), "`length_penalty`, expected a float >= 0"),
        (dict(temperature=0.0), "`temperature`"),
        (dict(top_k=0), "`top_k`"),
        (dict(top_k=10_000), r"`top_k`, expected None or an int in \[1, vocabulary_size="),
        (dict(temperature=float("nan")), "`temperature`"),
        (dict(length_penalty=float("inf")), "`length_penalty`, expected a finite float >= 0"),
        (dict(top_p=1.5), r"`top_p`, expected None or a float in \(0, 1\]"),
        (dict(seed="1"), "`seed`, expected None or an int"),
        (dict(batch_chunk=0), "`batch_chunk`"),
    ]:
        with pytest.raises(ValueError, match=match):
            TranslatorPipeline(**kwargs, **bad)
    lm = generator.model
    with pytest.raises(ValueError, match="`model`, expected a model built by `keras_attention.models.causal_lm`"):
        GeneratorPipeline(translator.model, generator.tokenizer)
    with pytest.raises(ValueError, match="`tokenizer`, expected at most the model's"):
        GeneratorPipeline(lm, big)
    with pytest.raises(ValueError, match="`prompt_length`, expected fewer tokens than the model's sequence_length=16"):
        GeneratorPipeline(lm, generator.tokenizer, prompt_length=16)
    with pytest.raises(ValueError, match="`start_token_id`, expected None or a token id"):
        GeneratorPipeline(lm, generator.tokenizer, start_token_id=0)
    with pytest.raises(ValueError, match="`prompt_length`, expected at least 2"):
        GeneratorPipeline(lm, generator.tokenizer, prompt_length=1, start_token_id=3)
    with pytest.raises(ValueError, match="`model`, expected a keras.Model"):
        FillMaskPipeline(None, tokenizer)
    with pytest.raises(ValueError, match="`mask_marker`, expected a non-empty string"):
        FillMaskPipeline(pipelines["fill_mask"].model, tokenizer, mask_marker=" ")
    with pytest.raises(ValueError, match="`tokenizer`, expected at most the model's"):
        FillMaskPipeline(pipelines["fill_mask"].model, big)
    with pytest.raises(ValueError, match=r"invalid number of inputs, expected 2 \(prompt, max_new_tokens\)"):
        generator(["a"])
