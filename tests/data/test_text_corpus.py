"""The standard-library docstring corpus, class counts, and the
classification, language-model and masked-LM pipelines."""

import inspect
import math

import numpy as np
import pytest
import tensorflow as tf

from keras_attention.data import RESERVED_TOKENS
from keras_attention.data import STDLIB_FAMILIES
from keras_attention.data import CharacterTokenizer
from keras_attention.data import class_counts
from keras_attention.data import docstring_classification_data
from keras_attention.data import docstring_text
from keras_attention.data import fit_tokenizer
from keras_attention.data import make_classification_dataset
from keras_attention.data import make_language_model_dataset
from keras_attention.data import make_masked_lm_dataset
from keras_attention.data import mask_tokens
from keras_attention.data import stdlib_docstrings
from keras_attention.data import text_corpus
from keras_attention.data import token_stream

MASK = 4


def test_corpus_is_deterministic_labelled_and_clean():
    corpus = stdlib_docstrings()
    text_corpus._corpus.cache_clear()
    assert stdlib_docstrings() == corpus  # rebuilt from scratch: same order
    names = list(STDLIB_FAMILIES)
    assert all(d.label == names.index(d.family) for d in corpus)
    assert all(len(d.text.split()) >= 8 for d in corpus)
    assert len({d.text for d in corpus}) == len(corpus)
    counts = class_counts([d.label for d in corpus], names)
    assert all(count >= 50 for count in counts.values()), counts
    by_source = {d.source: d for d in corpus}
    assert by_source["math.isclose"].family == "numeric"
    assert by_source["math.isclose"].text == inspect.cleandoc(math.isclose.__doc__)
    assert "math.sqrt" not in by_source  # "Return the square root of x." < 8 words
    assert by_source["json.dumps"].family == "formats"
    assert by_source["os.listdir"].family == "files"  # a posix-module member
    fewer = stdlib_docstrings(min_words=30)
    assert 0 < len(fewer) < len(corpus) and all(len(d.text.split()) >= 30 for d in fewer)


def test_splits_are_fixed_fractions_and_disjoint():
    corpus = stdlib_docstrings()
    sizes = {s: sum(d.split == s for d in corpus) for s in ("train", "validation", "test")}
    total = len(corpus)
    assert abs(sizes["train"] / total - 0.8) < 0.05
    assert abs(sizes["validation"] / total - 0.1) < 0.03
    assert abs(sizes["test"] / total - 0.1) < 0.03
    train, y_train, names = docstring_classification_data("train")
    test, y_test, _ = docstring_classification_data("test")
    assert len(train) == len(y_train) == sizes["train"] and y_train.dtype == np.int32
    assert not set(train) & set(test)
    assert names == list(STDLIB_FAMILIES)
    text = docstring_text("test")
    assert text == "\n\n".join(test)
    with pytest.raises(ValueError, match="split"):
        docstring_classification_data("dev")


def test_class_counts():
    assert class_counts(np.array([2, 0, 2]), ["a", "b", "c"]) == {"a": 1, "b": 0, "c": 2}
    with pytest.raises(ValueError, match=r"labels.*\[0, 2\)"):
        class_counts([0, 2], ["a", "b"])


def test_classification_dataset():
    texts = ["alpha beta", "gamma", "delta epsilon zeta", "eta"]
    labels = [0, 1, 1, 0]
    tokenizer = fit_tokenizer(texts, kind="character", sequence_length=20)
    batches = list(make_classification_dataset(texts, labels, tokenizer,
                                               batch_size=3).as_numpy_iterator())
    ids = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(ids, tokenizer(texts).numpy())
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), labels)
    shuffled = make_classification_dataset(texts, labels, tokenizer, batch_size=4,
                                           shuffle=True, seed=3)
    x, y = next(iter(shuffled))
    for row, label in zip(x.numpy(), y.numpy()):
        assert labels[texts.index(tokenizer.detokenize(row).numpy().decode())] == label
    with pytest.raises(ValueError, match="one label per text"):
        make_classification_dataset(texts, labels[:3], tokenizer)
    with pytest.raises(ValueError, match="at least one text"):
        make_classification_dataset([], [], tokenizer)
    with pytest.raises(ValueError, match="WordPieceTokenizer or CharacterTokenizer"):
        make_classification_dataset(texts, labels, tokenizer=None)


def test_language_model_windows_are_shifted_and_contiguous():
    text = "abcdefghij\nklmnopqrstuvwxyz" * 3
    tokenizer = fit_tokenizer([text], kind="character", sequence_length=8)
    stream = token_stream(text, tokenizer)
    np.testing.assert_array_equal(stream, [tokenizer.token_to_id(c) for c in text])
    batches = list(make_language_model_dataset(text, tokenizer, batch_size=4)
                   .as_numpy_iterator())
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    windows = (len(text) - 1) // 8
    assert x.shape == y.shape == (windows, 8)
    np.testing.assert_array_equal(x.reshape(-1), stream[: windows * 8])
    np.testing.assert_array_equal(y.reshape(-1), stream[1 : windows * 8 + 1])
    docs = token_stream(["ab", "ba"], tokenizer, document_separator=True)
    a, b = tokenizer.token_to_id("a"), tokenizer.token_to_id("b")
    np.testing.assert_array_equal(docs, [a, b, 3, b, a, 3])
    with pytest.raises(ValueError, match="at least sequence_length \\+ 1 = 9 tokens"):
        make_language_model_dataset("abcdefgh", tokenizer)
    with pytest.raises(ValueError, match="at least one token"):
        token_stream("", tokenizer)


def test_docstring_language_model_with_wordpiece():
    text = docstring_text("test")[:4000]
    tokenizer = fit_tokenizer(text, vocabulary_size=2000, sequence_length=16)
    x, y = next(iter(make_language_model_dataset(text, tokenizer, batch_size=2)))
    assert x.shape == (2, 16)
    np.testing.assert_array_equal(x[0, 1:], y[0, :-1])


def test_mask_tokens_statistics_and_determinism():
    vocabulary_size = 50
    ids = tf.constant(
        np.random.default_rng(0).integers(5, vocabulary_size, size=(200, 100)), tf.int32
    )
    ids = tf.concat([tf.zeros([200, 20], tf.int32), ids], axis=1)  # padding
    masked, target, weight = mask_tokens(ids, vocabulary_size, 0.15, seed=(1, 2))
    masked, target, weight = masked.numpy(), target.numpy(), weight.numpy()
    np.testing.assert_array_equal(target, ids.numpy())
    selected = weight == 1
    assert not selected[:, :20].any()  # padding never selected
    assert abs(selected[:, 20:].mean() - 0.15) < 0.01
    # unselected tokens are untouched
    np.testing.assert_array_equal(masked[~selected], target[~selected])
    as_mask = (masked[selected] == MASK).mean()
    unchanged = (masked[selected] == target[selected]).mean()
    assert abs(as_mask - 0.8) < 0.03 and abs(unchanged - 0.1 - 0.1 / 45) < 0.03
    assert (masked[selected] >= 4).all() and (masked < vocabulary_size).all()
    again = mask_tokens(ids, vocabulary_size, 0.15, seed=(1, 2))[0].numpy()
    np.testing.assert_array_equal(again, masked)
    with pytest.raises(ValueError, match=r"mask_rate.*\(0, 1\)"):
        mask_tokens(ids, vocabulary_size, 0.0)
    with pytest.raises(ValueError, match="vocabulary_size"):
        mask_tokens(ids, 5)


def test_masked_lm_dataset():
    texts = ["the quick brown fox jumps over the lazy dog"] * 6
    tokenizer = fit_tokenizer(texts, kind="character", add_start_token=True,
                              add_end_token=True)
    dataset = make_masked_lm_dataset(texts, tokenizer, batch_size=3, mask_rate=0.3, seed=4)
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == 2
    x0, y0, w0 = batches[0]
    x1, _, w1 = batches[1]
    assert x0.shape == y0.shape == w0.shape == (3, tokenizer.sequence_length)
    np.testing.assert_array_equal(y0, tokenizer(texts[:3]).numpy())
    assert not w0[y0 < len(RESERVED_TOKENS)].any()  # specials never selected
    assert w0.sum() > 0 and not np.array_equal(w0, w1)  # a new mask per batch
    again = list(make_masked_lm_dataset(texts, tokenizer, batch_size=3, mask_rate=0.3,
                                        seed=4).as_numpy_iterator())
    np.testing.assert_array_equal(again[0][0], x0)
    with pytest.raises(ValueError, match="mask_rate"):
        make_masked_lm_dataset(texts, tokenizer, mask_rate=1.0)
    assert isinstance(tokenizer, CharacterTokenizer)


def test_corpus_is_identical_in_a_fresh_process():
    import hashlib
    import os
    import subprocess
    import sys

    def digest(corpus):
        h = hashlib.sha256()
        for d in corpus:
            h.update(f"{d.source}\0{d.label}\0{d.split}\0{d.text}\0".encode())
        return h.hexdigest()

    script = (
        "from keras_attention.data.text_corpus import stdlib_docstrings\n"
        "import hashlib\n"
        "h = hashlib.sha256()\n"
        "for d in stdlib_docstrings():\n"
        "    h.update(f'{d.source}\\0{d.label}\\0{d.split}\\0{d.text}\\0'.encode())\n"
        "print(h.hexdigest())\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == digest(stdlib_docstrings())


def test_classification_dataset_rejects_non_integer_labels_and_a_bare_string():
    # [0.9, 1.7] used to become [0, 1]; "abc" became three texts.
    tokenizer = fit_tokenizer(["good film", "bad film"], kind="character")
    with pytest.raises(ValueError, match=r"`labels`, expected integer class ids\. "
                       r"Received: labels of dtype float64 \(first: \[0\.9, 1\.7\]\)"):
        make_classification_dataset(["good film", "bad film"], [0.9, 1.7], tokenizer)
    with pytest.raises(ValueError, match="`labels`, expected integer class ids"):
        make_classification_dataset(["good film", "bad film"], ["pos", "neg"], tokenizer)
    with pytest.raises(TypeError, match="`texts`, expected a list of strings"):
        make_classification_dataset("abc", [0, 1, 0], tokenizer)
    ids, labels = next(iter(make_classification_dataset(
        ["good film", "bad film"], np.array([1.0, 0.0]), tokenizer)))  # whole floats pass
    assert labels.numpy().tolist() == [1, 0]


@pytest.mark.parametrize("seed", [None, -1, 2**32, 1.5])
def test_masked_lm_dataset_seed_is_a_non_negative_int32(seed):
    # 2**32 used to wrap to 0 (the same masks as seed=0); None failed in TF.
    tokenizer = fit_tokenizer(["good film", "bad film"], kind="character")
    with pytest.raises(ValueError, match=r"`seed`, expected an int in \[0, 2\*\*31\)"):
        make_masked_lm_dataset(["good film", "bad film"], tokenizer, seed=seed)
