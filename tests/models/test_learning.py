"""Convergence runs of the model builders (slow: run with `-m slow`).

    python -m pytest -q -m slow tests/models/test_learning.py -s -p no:cacheprovider

Each prints its measured result. The default suite has a short version of
each run (a few dozen steps, loss must fall clearly) in the model's own test
file.

Measured on 2026-12-06 with the command above (2 shared CPU cores, TF 2.21,
Keras 3.15, other jobs running: load average 3-14), 3 passed in 535 s:

- translator, reversal of 3-10 symbol strings: greedy exact match 0.9920
  (>= 0.99 required), beam-4 0.9950 on 200 strings; train + decode 386 s.
- classifier, which keyword occurs: test accuracy 1.0000 (>= 0.95) in 85 s.
- causal LM, Zen of Python (187 tokens, 96 words): perplexity 1.004
  (< 1.1) in 58 s.
"""

import codecs
import contextlib
import io
import time

import keras
import numpy as np
import pytest

import keras_attention as ka
from keras_attention.training import MaskedSparseCategoricalCrossentropy
from keras_attention.training import TransformerSchedule

pytestmark = pytest.mark.slow

PAD, START, END = 0, 1, 2


def reversal_data(rng, n, max_length, symbols):
    """Random symbol strings (ids 3..) and their reversals, right-padded."""
    source = np.zeros((n, max_length), "int32")
    target = np.zeros((n, max_length + 2), "int32")
    for i in range(n):
        length = rng.integers(3, max_length + 1)
        seq = rng.integers(3, 3 + symbols, length)
        source[i, :length] = seq
        target[i, : length + 2] = [START, *seq[::-1], END]
    return source, target


def test_translator_learns_sequence_reversal():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    max_length, symbols = 10, 10
    source, target = reversal_data(rng, 24000, max_length, symbols)
    test_source, test_target = reversal_data(rng, 1000, max_length, symbols)
    model = ka.models.transformer_translator(
        vocabulary_size=3 + symbols, sequence_length=max_length + 2, num_layers=2,
        hidden_dim=64, num_heads=4, intermediate_dim=128, dropout=0.1,
        share_embeddings=True,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            TransformerSchedule(64, warmup_steps=400, scale=2.0),
            beta_2=0.98, epsilon=1e-9,
        ),
        loss=MaskedSparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        jit_compile=True,
    )
    start = time.time()
    model.fit(
        {"source_ids": source, "target_ids": target[:, :-1]}, target[:, 1:],
        batch_size=128, epochs=8, verbose=0,
    )
    generator = ka.generation.Seq2SeqGenerator(model, start_token_id=START, end_token_id=END)
    out = generator.greedy_search(test_source, max_new_tokens=max_length + 1)
    exact = np.mean([
        np.array_equal(out[i, : (test_target[i] != 0).sum()], test_target[i][test_target[i] != 0])
        for i in range(len(out))
    ])
    beam, _ = generator.beam_search(test_source[:200], max_new_tokens=max_length + 1)
    beam_exact = np.mean([
        np.array_equal(beam[i, : (test_target[i] != 0).sum()], test_target[i][test_target[i] != 0])
        for i in range(200)
    ])
    print(f"\nreversal: greedy exact match {exact:.4f}, beam-4 {beam_exact:.4f}, "
          f"train+decode {time.time() - start:.0f}s")
    assert exact >= 0.99


def test_classifier_learns_a_separable_task():
    # 4 classes: which of the keyword tokens 3..6 occurs in a random string
    # of filler tokens 7..30 (exactly one keyword, at a random position).
    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(1)

    def data(n):
        ids = rng.integers(7, 31, (n, 24))
        lengths = rng.integers(8, 25, n)
        labels = rng.integers(0, 4, n)
        for i in range(n):
            ids[i, rng.integers(1, lengths[i])] = 3 + labels[i]
            ids[i, lengths[i]:] = 0
        ids[:, 0] = 1  # [CLS]
        return ids, labels

    x, y = data(8000)
    x_test, y_test = data(1000)
    model = ka.models.transformer_classifier(
        vocabulary_size=31, sequence_length=24, num_classes=4, num_layers=2,
        hidden_dim=32, num_heads=4, intermediate_dim=64, dropout=0.1, pooling="cls",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"], jit_compile=True,
    )
    start = time.time()
    model.fit(x, y, batch_size=64, epochs=5, verbose=0)
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    print(f"\nclassifier: test accuracy {accuracy:.4f} in {time.time() - start:.0f}s")
    assert accuracy >= 0.95


def test_causal_lm_memorizes_a_small_corpus():
    # Word-level LM on the Zen of Python as one token stream (line breaks
    # are tokens): perplexity on the corpus itself must approach 1.
    with contextlib.redirect_stdout(io.StringIO()):
        import this  # the Zen of Python: a corpus every install has
    zen = codecs.decode(this.s, "rot13")
    words = zen.replace(".", " .").replace(",", " ,").replace("\n", " <n> ").split()
    vocabulary = sorted(set(words))
    ids = np.array([[START, *(vocabulary.index(w) + 3 for w in words), END]], "int32")
    keras.utils.set_random_seed(2)
    model = ka.models.causal_lm(
        vocabulary_size=len(vocabulary) + 3, sequence_length=ids.shape[1],
        num_layers=2, hidden_dim=64, num_heads=4, intermediate_dim=128, dropout=0.0,
    )
    loss = MaskedSparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, jit_compile=True)
    start = time.time()
    x, y = np.tile(ids[:, :-1], (300, 1)), np.tile(ids[:, 1:], (300, 1))
    model.fit(x, y, batch_size=1, epochs=1, verbose=0)
    logits = keras.ops.convert_to_numpy(model(ids[:, :-1])).astype("float64")
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    token_logp = np.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0]
    perplexity = float(np.exp(-token_logp.mean()))
    print(f"\ncausal LM: Zen of Python ({ids.shape[1] - 1} tokens, {len(vocabulary)} "
          f"words) perplexity {perplexity:.3f} in {time.time() - start:.0f}s")
    assert perplexity < 1.1
