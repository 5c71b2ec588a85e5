"""CharacterTokenizer: ids against a pure-Python reference, exact round
trips, vocabulary building, serialization and errors."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention.data import RESERVED_TOKENS
from keras_attention.data import CharacterTokenizer
from keras_attention.data import build_character_vocabulary

PAD, UNK, START, END, MASK = range(5)
TEXTS = ["2005-03-03", "naïve café\n", "tab\tand  spaces", "", "東京 ✓"]


def test_ids_match_python_reference():
    vocab = build_character_vocabulary(TEXTS[:3])
    tokenizer = CharacterTokenizer(vocab, sequence_length=32)
    index = {c: i for i, c in enumerate(vocab)}
    got = tokenizer.tokenize_ragged(TEXTS).to_list()
    for text, ids in zip(TEXTS, got):
        assert ids == [index.get(c, UNK) for c in text], text


def test_exact_round_trip_with_specials_and_padding():
    vocab = build_character_vocabulary(TEXTS)
    tokenizer = CharacterTokenizer(
        vocab, sequence_length=20, add_start_token=True, add_end_token=True
    )
    ids = tokenizer(TEXTS).numpy()
    assert ids.shape == (5, 20) and ids.dtype == np.int32
    assert (ids[:, 0] == START).all()
    np.testing.assert_array_equal(ids[3, :3], [START, END, PAD])
    assert [t.decode() for t in tokenizer.detokenize(ids).numpy()] == TEXTS


def test_truncation_keeps_end_token():
    vocab = build_character_vocabulary(["abcdef"])
    tokenizer = CharacterTokenizer(vocab, sequence_length=4, add_end_token=True)
    ids = tokenizer("abcdefabcdef").numpy()
    index = {c: i for i, c in enumerate(vocab)}
    np.testing.assert_array_equal(ids, [index["a"], index["b"], index["c"], END])
    assert tokenizer.detokenize(ids).numpy() == b"abc"


def test_vocabulary_order_size_and_frequency():
    vocab = build_character_vocabulary(["abba", "cab", "d"])
    # counts: a=3, b=3, c=1, d=1 -> by count, ties in code-point order.
    assert vocab == list(RESERVED_TOKENS) + ["a", "b", "c", "d"]
    assert build_character_vocabulary(["abba", "cab", "d"], max_size=7) == (
        list(RESERVED_TOKENS) + ["a", "b"]
    )
    assert build_character_vocabulary(["abba", "cab", "d"], min_frequency=2) == (
        list(RESERVED_TOKENS) + ["a", "b"]
    )
    texts = ["Hello World", "ÉTÉ"]
    folded = build_character_vocabulary(texts, lowercase=True, strip_accents=True)
    counts = collections.Counter("hello worldete")
    expected = sorted(counts, key=lambda c: (-counts[c], c))
    assert folded == list(RESERVED_TOKENS) + expected


def test_lowercase_and_strip_accents_in_tokenizer():
    vocab = list(RESERVED_TOKENS) + ["e", "t"]
    tokenizer = CharacterTokenizer(vocab, 4, lowercase=True, strip_accents=True)
    assert tokenizer.tokenize_ragged(["ÉtÉ"]).to_list() == [[5, 6, 5]]
    raw = CharacterTokenizer(vocab, 4)
    assert raw.tokenize_ragged(["ÉtÉ"]).to_list() == [[UNK, 6, UNK]]
    assert tokenizer.normalize(["ÉtÉ  x"]).numpy().tolist() == ["ete  x".encode()]
    assert raw.normalize("ÉtÉ").numpy().decode() == "ÉtÉ"


def test_config_round_trip_and_keras_file(tmp_path):
    vocab = build_character_vocabulary(TEXTS)
    tokenizer = CharacterTokenizer(vocab, 8, add_start_token=True)
    clone = keras.layers.deserialize(keras.layers.serialize(tokenizer))
    assert clone.get_config() == tokenizer.get_config()
    inputs = keras.Input(shape=(1,), dtype="string")
    model = keras.Model(inputs, tokenizer(inputs))
    model.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras", safe_mode=True)
    data = tf.constant([["naïve"], [""]])
    np.testing.assert_array_equal(loaded(data), model(data))


def test_errors():
    with pytest.raises(ValueError, match="single characters after the reserved"):
        CharacterTokenizer(list(RESERVED_TOKENS) + ["ab"], 4)
    with pytest.raises(ValueError, match="start with the reserved tokens"):
        CharacterTokenizer(["a"], 4)
    with pytest.raises(ValueError, match="max_size"):
        build_character_vocabulary(["abc"], max_size=5)
    with pytest.raises(ValueError, match="min_frequency"):
        build_character_vocabulary(["abc"], min_frequency=0)
    with pytest.raises(ValueError, match="seen 3 time"):
        build_character_vocabulary(["abc"], min_frequency=3)
    with pytest.raises(ValueError, match="at least one text"):
        build_character_vocabulary([])
