import os
import sys

import keras
import numpy as np
import pytest

import keras_attention as ka
from keras_attention.generation import Seq2SeqGenerator

sys.path.insert(0, os.path.dirname(__file__))
import reference_decoding as ref  # noqa: E402

VOCAB, LENGTH, START, END = 15, 12, 1, 2
SOURCES = np.array([[5, 6, 7, 8, 9], [4, 10, 0, 0, 0], [11, 3, 12, 0, 0]], "int32")


def build(**kwargs):
    keras.utils.set_random_seed(11)
    args = dict(
        vocabulary_size=VOCAB, sequence_length=LENGTH, num_layers=2, hidden_dim=16,
        num_heads=2, intermediate_dim=32, dropout=0.0, share_embeddings=True,
        # An untied head: with random weights, the tied one keeps repeating
        # the start token, which would make these comparisons vacuous.
        tie_output_embedding=False,
    )
    args.update(kwargs)
    return ka.models.transformer_translator(**args)


@pytest.fixture(scope="module")
def model():
    return build()


@pytest.fixture(scope="module")
def generator(model):
    return Seq2SeqGenerator(model, start_token_id=START, jit_compile=False)


def start_prompts(n):
    return np.full((n, 1), START, "int32")


def test_compiled_cached_greedy_equals_uncached_and_reference(model):
    generator = Seq2SeqGenerator(model, start_token_id=START, end_token_id=END)
    cached = generator.greedy_search(SOURCES, max_new_tokens=7)
    expected = ref.greedy_reference(model, start_prompts(3), 7, (END,), sources=SOURCES)
    np.testing.assert_array_equal(cached, expected)
    np.testing.assert_array_equal(
        generator.greedy_search(SOURCES, max_new_tokens=7, use_cache=False), expected
    )
    traces = generator.trace_count
    generator.greedy_search(SOURCES[::-1].copy(), max_new_tokens=7)
    assert generator.trace_count == traces


def test_source_padding_does_not_change_the_translation(generator):
    short = generator.greedy_search(SOURCES[:, :3], max_new_tokens=6)
    padded = generator.greedy_search(np.pad(SOURCES[:, :3], ((0, 0), (0, 4))), max_new_tokens=6)
    np.testing.assert_array_equal(short, padded)
    assert len({tuple(row) for row in short}) == 3  # the source matters


def test_target_prefixes_of_different_lengths(model, generator):
    prefixes = np.array([[START, 7, 8], [START, 0, 0], [START, 9, 0]], "int32")
    out = generator.greedy_search(
        {"source_ids": SOURCES, "target_ids": prefixes}, max_new_tokens=5
    )
    np.testing.assert_array_equal(
        out, ref.greedy_reference(model, prefixes, 5, sources=SOURCES)
    )


def test_unshared_untied_prenorm_model():
    model = build(share_embeddings=False, target_vocabulary_size=9,
                  tie_output_embedding=False, norm_first=True, num_decoder_layers=1)
    generator = Seq2SeqGenerator(model, start_token_id=START, jit_compile=False)
    np.testing.assert_array_equal(
        generator.greedy_search(SOURCES, max_new_tokens=5),
        ref.greedy_reference(model, start_prompts(3), 5, sources=SOURCES),
    )


def test_beam_width_one_is_greedy(generator):
    tokens, _ = generator.beam_search(SOURCES, max_new_tokens=6, beam_width=1)
    np.testing.assert_array_equal(tokens, generator.greedy_search(SOURCES, max_new_tokens=6))


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_best_beam_scores_at_least_greedy(model, generator, alpha):
    greedy = generator.greedy_search(SOURCES, max_new_tokens=6)
    tokens, scores = generator.beam_search(
        SOURCES, max_new_tokens=6, beam_width=4, length_penalty=alpha
    )
    for r in range(3):
        beam = ref.sequence_score(model, tokens[r], 1, alpha, source=SOURCES[r])
        np.testing.assert_allclose(scores[r], beam, rtol=1e-4, atol=1e-4)
        greedy_score = ref.sequence_score(model, greedy[r], 1, alpha, source=SOURCES[r])
        assert beam >= greedy_score - 1e-5


def test_sampling_top_k_one_is_greedy_and_seeded(generator):
    greedy = generator.greedy_search(SOURCES, max_new_tokens=6)
    np.testing.assert_array_equal(
        generator.sample(SOURCES, max_new_tokens=6, top_k=1, seed=0), greedy
    )
    a = generator.sample(SOURCES, max_new_tokens=6, temperature=1.5, seed=9)
    np.testing.assert_array_equal(a, generator.sample(SOURCES, max_new_tokens=6, temperature=1.5, seed=9))


@pytest.mark.parametrize(
    "inputs, match",
    [
        (np.ones((1, LENGTH + 1), "int32"), "at most sequence_length"),
        (np.array([[3, VOCAB]]), "`source_ids`, expected ids in"),
        ({"source_ids": SOURCES, "target_ids": np.array([[START, 0, 4]] * 3)}, "right-padded"),
        ({"source_ids": SOURCES, "target_ids": start_prompts(2)}, "same batch size"),
        ({"target_ids": start_prompts(3)}, "key 'source_ids'"),
        ({"source_ids": SOURCES, "target_ids": np.array([[START, 99]] * 3)}, "`target_ids`, expected ids in"),
    ],
)
def test_bad_inputs_raise(generator, inputs, match):
    with pytest.raises(ValueError, match=match):
        generator.greedy_search(inputs, max_new_tokens=3)


def test_prompt_plus_new_tokens_must_fit(generator):
    with pytest.raises(ValueError, match="max_new_tokens"):
        generator.greedy_search(SOURCES, max_new_tokens=LENGTH)


def test_bad_constructor_arguments_raise(model):
    for bad in (0, VOCAB, None):
        with pytest.raises(ValueError, match="start_token_id"):
            Seq2SeqGenerator(model, start_token_id=bad)
    with pytest.raises(ValueError, match="transformer_translator"):
        Seq2SeqGenerator(
            ka.models.causal_lm(vocabulary_size=9, sequence_length=8, num_layers=1,
                                hidden_dim=8, num_heads=2, intermediate_dim=8),
            start_token_id=1,
        )
