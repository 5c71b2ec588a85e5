"""The generators on the JAX and PyTorch backends (a subprocess each: the
backend is global). On JAX the decoding loop is one `jax.jit` function; on
PyTorch it runs eagerly, one call per generation."""

import textwrap

import pytest
from backend_utils import run_on_backend

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np, keras
    import keras_attention as ka
    assert keras.backend.backend() == sys.argv[1], keras.backend.backend()
    jax = sys.argv[1] == "jax"
    keras.utils.set_random_seed(0)
    model = ka.models.causal_lm(vocabulary_size=17, sequence_length=10,
                                num_layers=1, hidden_dim=8, num_heads=2,
                                intermediate_dim=16, dropout=0.0)
    generator = ka.generation.CausalLMGenerator(model, end_token_id=2)
    prompts = np.array([[5, 6, 7], [4, 0, 0]])
    cached = generator.greedy_search(prompts, max_new_tokens=5)
    generator.greedy_search(prompts[::-1].copy(), max_new_tokens=5)
    assert generator.trace_count == (1 if jax else 2), generator.trace_count
    uncached = generator.greedy_search(prompts, max_new_tokens=5, use_cache=False)
    assert (cached == uncached).all()
    for r, row in enumerate(prompts):
        seq = [int(t) for t in row if t]
        for _ in range(5):
            logits = keras.ops.convert_to_numpy(model(np.array([seq])))[0, -1]
            logits[0] = -np.inf
            seq.append(int(logits.argmax()))
            if seq[-1] == 2:
                break
        assert list(cached[r, :len(seq)]) == seq, (cached[r], seq)
    a = generator.sample(prompts, max_new_tokens=5, top_k=4, top_p=0.9, seed=3)
    b = generator.sample(prompts, max_new_tokens=5, top_k=4, top_p=0.9, seed=3)
    assert (a == b).all()
    tokens, _ = generator.beam_search(prompts, max_new_tokens=5, beam_width=1)
    assert (tokens == cached).all()
    # On JAX the weights are inputs of the compiled loop: updates are seen.
    before = generator.trace_count
    kernel = model.get_layer("decoder_block_0").feedforward.weights[0]
    kernel.assign(kernel.value * 3.0)
    after = generator.greedy_search(prompts, max_new_tokens=5)
    assert generator.trace_count == (before if jax else before + 1)
    assert (after == ka.generation.CausalLMGenerator(model, end_token_id=2,
            jit_compile=False).greedy_search(prompts, max_new_tokens=5)).all()
    # The encoder-decoder generator: cached steps equal full re-decoding.
    translator = ka.models.transformer_translator(
        vocabulary_size=17, sequence_length=10, num_layers=1, hidden_dim=8,
        num_heads=2, intermediate_dim=16, dropout=0.0)
    seq2seq = ka.generation.Seq2SeqGenerator(translator, start_token_id=1, end_token_id=2)
    sources = np.array([[5, 6, 7, 8], [4, 9, 0, 0]])
    cached = seq2seq.greedy_search(sources, max_new_tokens=5)
    assert (cached == seq2seq.greedy_search(sources, max_new_tokens=5, use_cache=False)).all()
    tokens, _ = seq2seq.beam_search(sources, max_new_tokens=5, beam_width=1)
    assert (tokens == cached).all()
    print("ok")
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_generation_on_other_backends(backend):
    run_on_backend(SCRIPT, backend)
