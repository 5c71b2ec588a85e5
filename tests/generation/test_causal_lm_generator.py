import os
import sys

import keras
import numpy as np
import pytest

import keras_attention as ka
from keras_attention.generation import CausalLMGenerator

sys.path.insert(0, os.path.dirname(__file__))
import reference_decoding as ref  # noqa: E402

VOCAB, LENGTH, END = 13, 16, 2
PROMPTS = np.array([[5, 6, 7, 8], [4, 0, 0, 0], [9, 3, 0, 0]], "int32")


def build(**kwargs):
    keras.utils.set_random_seed(7)
    args = dict(
        vocabulary_size=VOCAB, sequence_length=LENGTH, num_layers=2, hidden_dim=16,
        num_heads=2, intermediate_dim=32, dropout=0.0,
    )
    args.update(kwargs)
    return ka.models.causal_lm(**args)


@pytest.fixture(scope="module")
def model():
    return build()


@pytest.fixture(scope="module")
def xla_generator(model):
    return CausalLMGenerator(model, end_token_id=END)


@pytest.fixture(scope="module")
def generator(model):
    # Graph mode without XLA: the same loop, quicker to trace in tests.
    return CausalLMGenerator(model, end_token_id=END, jit_compile=False)


def test_compiled_cached_greedy_equals_uncached_and_reference(model, xla_generator):
    cached = xla_generator.greedy_search(PROMPTS, max_new_tokens=8)
    uncached = xla_generator.greedy_search(PROMPTS, max_new_tokens=8, use_cache=False)
    expected = ref.greedy_reference(model, PROMPTS, 8, end_ids=(END,))
    np.testing.assert_array_equal(cached, expected)
    np.testing.assert_array_equal(uncached, expected)
    assert cached.shape == (3, 12) and cached.dtype == np.int32


def test_same_shapes_do_not_retrace(xla_generator):
    xla_generator.greedy_search(PROMPTS, max_new_tokens=8)
    traces = xla_generator.trace_count
    other = np.array([[3, 4, 0, 0], [6, 7, 8, 9], [10, 0, 0, 0]], "int32")
    xla_generator.greedy_search(other, max_new_tokens=8)
    xla_generator.greedy_search(PROMPTS, max_new_tokens=8)
    assert xla_generator.trace_count == traces
    # A new buffer length is a new shape: one more trace.
    xla_generator.greedy_search(PROMPTS, max_new_tokens=5)
    assert xla_generator.trace_count == traces + 1


def test_beam_search_same_shapes_do_not_retrace(model, xla_generator):
    xla_generator.beam_search(PROMPTS, max_new_tokens=6, beam_width=3)
    traces = xla_generator.trace_count
    other = np.array([[3, 4, 0, 0], [6, 7, 8, 9], [10, 0, 0, 0]], "int32")
    tokens, scores = xla_generator.beam_search(
        other, max_new_tokens=6, beam_width=3, length_penalty=1.0
    )
    assert xla_generator.trace_count == traces
    # The reused program decoded the new prompts with the new length
    # penalty: each row keeps its prompt, and its score is the NumPy
    # reference score of its tokens with alpha = 1.0.
    for r, row in enumerate(other):
        n = int((row != 0).sum())
        np.testing.assert_array_equal(tokens[r, :n], row[:n])
        np.testing.assert_allclose(
            scores[r], ref.sequence_score(model, tokens[r], n, 1.0), rtol=1e-4, atol=1e-4
        )
    # A new beam width is a new program: one more trace.
    xla_generator.beam_search(PROMPTS, max_new_tokens=6, beam_width=2)
    assert xla_generator.trace_count == traces + 1


def test_sampling_options_are_tensors_no_retrace(generator):
    generator.sample(PROMPTS, max_new_tokens=4, temperature=0.7, top_p=0.9, seed=1)
    traces = generator.trace_count
    generator.sample(PROMPTS, max_new_tokens=4, temperature=1.3, top_p=0.5, seed=2)
    assert generator.trace_count == traces


def test_each_row_continues_its_own_prompt(model, generator):
    batch = generator.greedy_search(PROMPTS, max_new_tokens=6)
    for r, row in enumerate(PROMPTS):
        alone = generator.greedy_search(row[row != 0][None, :], max_new_tokens=6)[0]
        n = int((row != 0).sum())
        np.testing.assert_array_equal(batch[r, : n + 6], alone)
        np.testing.assert_array_equal(batch[r, :n], row[:n])


@pytest.mark.parametrize("scheme", ["rotary", "relative", "alibi"])
def test_cached_equals_uncached_with_position_schemes(scheme):
    model = build(position_scheme=scheme, norm_first=False, position_encoding="sinusoidal")
    generator = CausalLMGenerator(model, jit_compile=False)
    cached = generator.greedy_search(PROMPTS, max_new_tokens=6)
    np.testing.assert_array_equal(cached, ref.greedy_reference(model, PROMPTS, 6))


@pytest.mark.parametrize("scheme", [None, "alibi"])
def test_empty_caches_make_room_for_re_decoding_the_prompts(scheme):
    # Prompts padded to 4, the shortest of 2 tokens: the search re-decodes
    # from position 1, 2 positions before the newest prefilled, and needs
    # position 0 still held. The generator asks for rewind = 4 - 1 = 3 (a
    # shortest prompt of 1 token would start 3 back), so a rolling local
    # cache (window 1) keeps 1 + 1 + 3 slots. Beam scores through it equal
    # the uncached full passes' (with one slot fewer than needed, 3, they
    # would not), with ALiBi too: its bias read at the positions the ring's
    # slots hold.
    model = build(attention_kernel="local", attention_kernel_options={"window_size": 1},
                  position_scheme=scheme)
    generator = CausalLMGenerator(model, jit_compile=False)
    caches = generator.empty_caches(3, LENGTH, prompt_width=4)
    assert [tuple(keys.shape) for keys, _ in caches] == [(3, 5, 2, 8)] * 2
    prompts = np.array([[5, 6, 7, 8], [4, 3, 0, 0], [9, 3, 6, 0]], "int32")
    cached = generator.beam_search(prompts, max_new_tokens=6, beam_width=2)
    uncached = generator.beam_search(prompts, max_new_tokens=6, beam_width=2,
                                     use_cache=False)
    np.testing.assert_array_equal(cached[0], uncached[0])
    np.testing.assert_allclose(cached[1], uncached[1], atol=1e-4)
    for width in (0, 2.5, True):
        with pytest.raises(ValueError, match=r"argument `prompt_width`, expected a "
                           rf"positive int. Received: prompt_width={width!r}"):
            generator.empty_caches(3, LENGTH, prompt_width=width)


def test_untied_head_and_grouped_query_attention():
    model = build(tie_output_embedding=False, num_heads=4, num_key_value_heads=2)
    generator = CausalLMGenerator(model, jit_compile=False)
    np.testing.assert_array_equal(
        generator.greedy_search(PROMPTS, max_new_tokens=5),
        ref.greedy_reference(model, PROMPTS, 5),
    )


def test_end_token_stops_a_row_and_pads_after_it(model):
    # Use the token greedy picks first for row 1 as the end token.
    first = int(CausalLMGenerator(model, jit_compile=False).greedy_search(
        PROMPTS, max_new_tokens=1)[1, 1])
    generator = CausalLMGenerator(model, end_token_id=(first, 12), jit_compile=False)
    out = generator.greedy_search(PROMPTS, max_new_tokens=8)
    np.testing.assert_array_equal(out[1, :2], [4, first])
    assert (out[1, 2:] == 0).all()
    np.testing.assert_array_equal(
        out, ref.greedy_reference(model, PROMPTS, 8, end_ids=(first, 12))
    )


def test_beam_width_one_is_greedy(generator):
    greedy = generator.greedy_search(PROMPTS, max_new_tokens=7)
    tokens, _ = generator.beam_search(PROMPTS, max_new_tokens=7, beam_width=1)
    np.testing.assert_array_equal(tokens, greedy)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_best_beam_scores_at_least_greedy(model, generator, alpha):
    greedy = generator.greedy_search(PROMPTS, max_new_tokens=7)
    tokens, scores = generator.beam_search(
        PROMPTS, max_new_tokens=7, beam_width=4, length_penalty=alpha
    )
    for r, row in enumerate(PROMPTS):
        n = int((row != 0).sum())
        beam = ref.sequence_score(model, tokens[r], n, alpha)
        np.testing.assert_allclose(scores[r], beam, rtol=1e-4, atol=1e-4)
        assert beam >= ref.sequence_score(model, greedy[r], n, alpha) - 1e-5


def test_all_beams_are_sorted_distinct_and_scored(model, generator):
    tokens, scores = generator.beam_search(
        PROMPTS, max_new_tokens=5, beam_width=3, return_all_beams=True
    )
    assert tokens.shape == (3, 3, 9) and scores.shape == (3, 3)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    for r, row in enumerate(PROMPTS):
        n = int((row != 0).sum())
        assert len({tuple(b) for b in tokens[r]}) == 3
        for k in range(3):
            np.testing.assert_allclose(
                scores[r, k], ref.sequence_score(model, tokens[r, k], n, 0.6),
                rtol=1e-4, atol=1e-4,
            )


def test_top_k_one_and_tiny_top_p_are_greedy(generator):
    greedy = generator.greedy_search(PROMPTS, max_new_tokens=6)
    np.testing.assert_array_equal(
        generator.sample(PROMPTS, max_new_tokens=6, top_k=1, seed=3), greedy
    )
    np.testing.assert_array_equal(
        generator.sample(PROMPTS, max_new_tokens=6, top_p=1e-6, seed=4), greedy
    )


def test_seed_controls_sampling(generator):
    a = generator.sample(PROMPTS, max_new_tokens=6, seed=11)
    b = generator.sample(PROMPTS, max_new_tokens=6, seed=11)
    c = generator.sample(PROMPTS, max_new_tokens=6, seed=12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a[:, :1] == PROMPTS[:, :1]).all()


@pytest.mark.parametrize(
    "options", [dict(temperature=0.5), dict(temperature=1.0, top_k=4), dict(top_p=0.6)]
)
def test_first_sampled_token_follows_the_filtered_distribution(model, generator, options):
    prompt = np.tile(np.array([[5, 6, 7]], "int32"), (2000, 1))
    out = generator.sample(prompt, max_new_tokens=1, seed=5, **options)[:, 3]
    logits = ref.next_token_logits(model, [5, 6, 7])
    logits[0] = -np.inf
    logits = logits / options.get("temperature", 1.0)
    order = np.argsort(-logits)
    if "top_k" in options:
        logits[order[options["top_k"]:]] = -np.inf
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if "top_p" in options:
        sorted_probs = probs[order]
        kept = order[(np.cumsum(sorted_probs) - sorted_probs) < options["top_p"]]
        mask = np.zeros_like(probs, bool)
        mask[kept] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    counts = np.bincount(out, minlength=VOCAB)
    assert counts[probs == 0].sum() == 0
    support = probs > 0
    expected = probs[support] * len(out)
    chi2 = ((counts[support] - expected) ** 2 / expected).sum()
    dof = max(int(support.sum()) - 1, 1)
    assert chi2 < dof + 6 * np.sqrt(2 * dof) + 10, (chi2, dof)


def test_mixed_precision_generation_runs():
    keras.config.set_dtype_policy("mixed_bfloat16")
    model = build()
    out = CausalLMGenerator(model, jit_compile=False).greedy_search(PROMPTS, max_new_tokens=3)
    assert out.shape == (3, 7) and (out[:, :1] == PROMPTS[:, :1]).all()
    assert ((out > 0).sum(axis=1) == (PROMPTS != 0).sum(axis=1) + 3).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g: g.greedy_search(np.ones((1, LENGTH + 1), "int32")), "at most sequence_length"),
        (lambda g: g.greedy_search(PROMPTS, max_new_tokens=LENGTH), "max_new_tokens"),
        (lambda g: g.greedy_search(PROMPTS, max_new_tokens=0), "max_new_tokens"),
        (lambda g: g.greedy_search(np.array([[3, VOCAB]])), r"expected ids in \[0, vocabulary_size=13\)"),
        (lambda g: g.greedy_search(np.array([[3, -1]])), "expected ids in"),
        (lambda g: g.greedy_search(np.array([[0, 3]])), "right-padded rows"),
        (lambda g: g.greedy_search(np.array([[0, 0]])), "right-padded rows"),
        (lambda g: g.greedy_search(np.array([3, 4])), "rank-2 integer array"),
        (lambda g: g.greedy_search(np.array([[3.0, 4.0]])), "rank-2 integer array"),
        (lambda g: g.greedy_search({"ids": PROMPTS}), "key 'token_ids'"),
        (lambda g: g.beam_search(PROMPTS, beam_width=0), "beam_width"),
        (lambda g: g.beam_search(PROMPTS, length_penalty=-1.0), "length_penalty"),
        (lambda g: g.sample(PROMPTS, top_p=0.0), "top_p"),
        (lambda g: g.sample(PROMPTS, top_p=1.5), "top_p"),
        (lambda g: g.sample(PROMPTS, top_k=0), "top_k"),
        (lambda g: g.sample(PROMPTS, top_k=VOCAB + 1), "top_k"),
        (lambda g: g.sample(PROMPTS, temperature=0.0), "temperature"),
        (lambda g: g.sample(PROMPTS, temperature=float("nan")), "temperature"),
        (lambda g: g.sample(PROMPTS, temperature=float("inf")), "finite positive float"),
        (lambda g: g.sample(PROMPTS, top_p=float("nan")), "top_p"),
        (lambda g: g.beam_search(PROMPTS, length_penalty=float("nan")), "length_penalty"),
        (lambda g: g.beam_search(PROMPTS, length_penalty=float("inf")), "finite float >= 0"),
        (lambda g: g.sample(PROMPTS, seed=1.5), "seed"),
        (lambda g: g.greedy_search(PROMPTS, use_cache=1), "use_cache"),
    ],
)
def test_bad_calls_raise(generator, call, match):
    with pytest.raises(ValueError, match=match):
        call(generator)


def test_padding_is_never_sampled_at_any_temperature(generator):
    # Padding used to be excluded before the division by the temperature,
    # so a huge temperature brought its -1e9 logit back to about -1 and
    # padding (id 0) was sampled mid-sequence.
    tokens = generator.sample(PROMPTS, max_new_tokens=10, temperature=1e9, seed=3)
    lengths = (PROMPTS != 0).sum(axis=1)
    for row, length in zip(tokens, lengths):
        generated = row[length:length + 10]
        ends = np.flatnonzero(generated == END)
        before_end = generated[: ends[0]] if ends.size else generated
        assert (before_end != 0).all(), row
    # And the draws are spread over the vocabulary, not stuck on one id.
    assert len(np.unique(tokens[:, LENGTH // 2:])) > 3


def test_bad_constructor_arguments_raise(model):
    with pytest.raises(ValueError, match="expected a model built by `keras_attention.models.causal_lm`"):
        CausalLMGenerator(keras.Sequential([keras.layers.Dense(2)]))
    translator = ka.models.transformer_translator(
        vocabulary_size=10, sequence_length=8, num_layers=1, hidden_dim=8,
        num_heads=2, intermediate_dim=8,
    )
    with pytest.raises(ValueError, match="causal_lm"):
        CausalLMGenerator(translator)
    for bad in (0, VOCAB, (3, 0), 2.0):
        with pytest.raises(ValueError, match="end_token_id"):
            CausalLMGenerator(model, end_token_id=bad)
