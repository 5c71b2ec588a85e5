"""The generators on the JAX backend (a subprocess: the backend is global)."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

SCRIPT = textwrap.dedent(
    """
    import numpy as np, keras
    import keras_attention as ka
    assert keras.backend.backend() == "jax"
    keras.utils.set_random_seed(0)
    model = ka.models.causal_lm(vocabulary_size=17, sequence_length=10,
                                num_layers=1, hidden_dim=8, num_heads=2,
                                intermediate_dim=16, dropout=0.0)
    generator = ka.generation.CausalLMGenerator(model, end_token_id=2)
    prompts = np.array([[5, 6, 7], [4, 0, 0]])
    cached = generator.greedy_search(prompts, max_new_tokens=5)
    generator.greedy_search(prompts[::-1].copy(), max_new_tokens=5)
    assert generator.trace_count == 1, generator.trace_count
    uncached = generator.greedy_search(prompts, max_new_tokens=5, use_cache=False)
    assert (cached == uncached).all()
    for r, row in enumerate(prompts):
        seq = [int(t) for t in row if t]
        for _ in range(5):
            logits = np.array(model(np.array([seq])))[0, -1]
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
    # The weights are inputs of the compiled loop: updates are seen.
    before = generator.trace_count
    kernel = model.get_layer("decoder_block_0").feedforward.weights[0]
    kernel.assign(kernel.value * 3.0)
    after = generator.greedy_search(prompts, max_new_tokens=5)
    assert generator.trace_count == before
    assert (after == ka.generation.CausalLMGenerator(model, end_token_id=2,
            jit_compile=False).greedy_search(prompts, max_new_tokens=5)).all()
    print("ok")
    """
)


def test_generation_runs_compiled_on_jax():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
