"""The generators on the JAX and PyTorch backends. On JAX the decoding
loop is one `jax.jit` function; on PyTorch it runs eagerly, one trace per
generation.

CI runs this file with `KERAS_BACKEND=jax` and `KERAS_BACKEND=torch`; on
TensorFlow the rest of `tests/generation` covers the generators."""

import numpy as np
import pytest
from backend_utils import BACKEND
from backend_utils import to_numpy

import keras_attention as ka

pytestmark = pytest.mark.skipif(
    BACKEND == "tensorflow", reason="the rest of tests/generation covers TensorFlow"
)
JAX = BACKEND == "jax"


def test_causal_lm_generator():
    model = ka.models.causal_lm(
        vocabulary_size=17, sequence_length=10, num_layers=1, hidden_dim=8,
        num_heads=2, intermediate_dim=16, dropout=0.0,
    )
    generator = ka.generation.CausalLMGenerator(model, end_token_id=2)
    prompts = np.array([[5, 6, 7], [4, 0, 0]])
    cached = generator.greedy_search(prompts, max_new_tokens=5)
    generator.greedy_search(prompts[::-1].copy(), max_new_tokens=5)
    assert generator.trace_count == (1 if JAX else 2)
    uncached = generator.greedy_search(prompts, max_new_tokens=5, use_cache=False)
    np.testing.assert_array_equal(cached, uncached)
    for r, row in enumerate(prompts):  # greedy decoding by full passes
        seq = [int(t) for t in row if t]
        for _ in range(5):
            logits = to_numpy(model(np.array([seq])))[0, -1]
            logits[0] = -np.inf
            seq.append(int(logits.argmax()))
            if seq[-1] == 2:
                break
        assert list(cached[r, : len(seq)]) == seq, (cached[r], seq)
    a = generator.sample(prompts, max_new_tokens=5, top_k=4, top_p=0.9, seed=3)
    b = generator.sample(prompts, max_new_tokens=5, top_k=4, top_p=0.9, seed=3)
    np.testing.assert_array_equal(a, b)
    tokens, _ = generator.beam_search(prompts, max_new_tokens=5, beam_width=1)
    np.testing.assert_array_equal(tokens, cached)
    # On JAX the weights are inputs of the compiled loop: updates are seen.
    before = generator.trace_count
    kernel = model.get_layer("decoder_block_0").feedforward.weights[0]
    kernel.assign(kernel.value * 3.0)
    after = generator.greedy_search(prompts, max_new_tokens=5)
    assert generator.trace_count == (before if JAX else before + 1)
    eager = ka.generation.CausalLMGenerator(model, end_token_id=2, jit_compile=False)
    np.testing.assert_array_equal(after, eager.greedy_search(prompts, max_new_tokens=5))


def test_seq2seq_generator_cached_steps_equal_full_decoding():
    translator = ka.models.transformer_translator(
        vocabulary_size=17, sequence_length=10, num_layers=1, hidden_dim=8,
        num_heads=2, intermediate_dim=16, dropout=0.0,
    )
    seq2seq = ka.generation.Seq2SeqGenerator(translator, start_token_id=1, end_token_id=2)
    sources = np.array([[5, 6, 7, 8], [4, 9, 0, 0]])
    cached = seq2seq.greedy_search(sources, max_new_tokens=5)
    np.testing.assert_array_equal(
        cached, seq2seq.greedy_search(sources, max_new_tokens=5, use_cache=False)
    )
    tokens, _ = seq2seq.beam_search(sources, max_new_tokens=5, beam_width=1)
    np.testing.assert_array_equal(tokens, cached)
