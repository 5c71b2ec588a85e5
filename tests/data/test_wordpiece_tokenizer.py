"""WordPieceTokenizer: greedy longest-match-first against a hand-derived
case, a pure-Python reference and tensorflow-text; specials, truncation,
standardisation, detokenization, serialization and errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention.data import RESERVED_TOKENS
from keras_attention.data import WordPieceTokenizer
from keras_attention.data import build_wordpiece_vocabulary
from keras_attention.data import split_words

PAD, UNK, START, END, MASK = range(5)

HAND_VOCAB = list(RESERVED_TOKENS) + [
    "un", "##aff", "##able", "##a", "a", "b", "##b", "the", "cat", "##s",
    "!", ",", "runn", "##ing", "r", "##u", "##n", "##i", "##g",
]

CORPUS = [
    "The cats sat on the mat, and the dog sat on the log.",
    "Running runners run; the runner ran quickly!",
    "Unaffable cats aren't (always) unaffordable: 42 cats.",
    "A wordpiece vocabulary splits rare words into frequent pieces.",
    "Tokenizers, tokenization and tokenized texts.",
]


def _reference_wordpiece(word, vocab):
    """Greedy longest-match-first (Wu et al. 2016), written independently."""
    if len(word) > 100:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                pieces.append(piece)
                start = end
                break
        else:
            return ["[UNK]"]
    return pieces


def _reference_words(text):
    """Lower-case, split on whitespace with punctuation as separate words."""
    import unicodedata

    words, current = [], ""
    for char in text.lower():
        category = unicodedata.category(char)
        if char.isspace():
            if current:
                words.append(current)
            current = ""
        elif category[0] in "PS":
            if current:
                words.append(current)
            words.append(char)
            current = ""
        else:
            current += char
    if current:
        words.append(current)
    return words


@pytest.fixture(scope="module")
def corpus_vocab():
    return build_wordpiece_vocabulary(CORPUS * 10, vocabulary_size=120)


def test_hand_derived_wordpieces():
    tokenizer = WordPieceTokenizer(HAND_VOCAB, sequence_length=12)
    ids = tokenizer.tokenize_ragged(["unaffable cats!", "running b", "xyz"]).to_list()
    index = {t: i for i, t in enumerate(HAND_VOCAB)}
    assert ids[0] == [index[t] for t in ["un", "##aff", "##able", "cat", "##s", "!"]]
    assert ids[1] == [index[t] for t in ["runn", "##ing", "b"]]
    # A word that cannot be covered is one [UNK], not partial pieces.
    assert ids[2] == [UNK]


def test_matches_pure_python_reference(corpus_vocab):
    tokenizer = WordPieceTokenizer(corpus_vocab, sequence_length=64)
    vocab = set(corpus_vocab)
    index = {t: i for i, t in enumerate(corpus_vocab)}
    texts = CORPUS + ["Completely unseen vocabulary: zyzzyva quixotic!"]
    got = tokenizer.tokenize_ragged(texts).to_list()
    for text, ids in zip(texts, got):
        expected = [
            index[p]
            for word in _reference_words(text)
            for p in _reference_wordpiece(word, vocab)
        ]
        assert ids == expected, text


def test_matches_tensorflow_text(corpus_vocab):
    import tensorflow_text as tf_text

    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            corpus_vocab, tf.range(len(corpus_vocab), dtype=tf.int64)
        ),
        default_value=-1,
    )
    peer = tf_text.WordpieceTokenizer(
        table, suffix_indicator="##", unknown_token="[UNK]", token_out_type=tf.int64
    )
    long_word = "a" * 150  # > 100 bytes / characters: [UNK] in both.
    texts = CORPUS + ["zebra quagga " + long_word, ""]
    tokenizer = WordPieceTokenizer(corpus_vocab, sequence_length=64)
    words = split_words(tokenizer.standardize(tf.constant(texts)))
    expected = peer.tokenize(words).merge_dims(1, 2).to_list()
    assert tokenizer.tokenize_ragged(texts).to_list() == expected


def test_split_words_isolates_punctuation_and_cjk():
    words = split_words(["Hi,\tyou\u00a0there!", "東京 tower", "", "a\u200bb"]).to_list()
    assert words == [
        [b"Hi", b",", b"you", b"there", b"!"],
        ["東".encode(), "京".encode(), b"tower"],
        [],
        [b"ab"],
    ]


def test_special_tokens_truncation_padding_and_empty():
    tokenizer = WordPieceTokenizer(
        HAND_VOCAB, sequence_length=5, add_start_token=True, add_end_token=True
    )
    index = {t: i for i, t in enumerate(HAND_VOCAB)}
    ids = tokenizer(["the cat", "", "the cat the cat the cat"]).numpy()
    assert ids.dtype == np.int32 and ids.shape == (3, 5)
    np.testing.assert_array_equal(ids[0], [START, index["the"], index["cat"], END, PAD])
    np.testing.assert_array_equal(ids[1], [START, END, PAD, PAD, PAD])
    # Long input: truncated, the end token is kept.
    np.testing.assert_array_equal(
        ids[2], [START, index["the"], index["cat"], index["the"], END]
    )
    no_specials = WordPieceTokenizer(HAND_VOCAB, sequence_length=2)
    np.testing.assert_array_equal(
        no_specials(["the cat the"]).numpy(), [[index["the"], index["cat"]]]
    )


def test_input_shapes():
    tokenizer = WordPieceTokenizer(HAND_VOCAB, sequence_length=4)
    assert tuple(tokenizer("the cat").shape) == (4,)
    batch = tokenizer(tf.constant([["the"], ["cat"]])).numpy()
    assert batch.shape == (2, 4)
    np.testing.assert_array_equal(batch, tokenizer(["the", "cat"]).numpy())
    assert tokenizer.compute_output_shape((None,)) == (None, 4)
    symbolic = tokenizer(keras.Input(shape=(), dtype="string"))
    assert tuple(symbolic.shape) == (None, 4) and symbolic.dtype == "int32"


def test_lowercase_and_strip_accents():
    vocab = list(RESERVED_TOKENS) + ["ca", "va", "ete", "?"]
    folded = WordPieceTokenizer(vocab, 6, lowercase=True, strip_accents=True)
    np.testing.assert_array_equal(
        folded.tokenize_ragged(["ÇA va? Été"]).to_list(), [[5, 6, 8, 7]]
    )
    kept = WordPieceTokenizer(vocab, 6, lowercase=False, strip_accents=False)
    assert kept.tokenize_ragged(["ÇA va Été"]).to_list() == [[UNK, 6, UNK]]


def test_detokenize_joins_pieces_and_strips_specials():
    tokenizer = WordPieceTokenizer(HAND_VOCAB, sequence_length=16)
    index = {t: i for i, t in enumerate(HAND_VOCAB)}
    pieces = ["un", "##aff", "##able", "cat", "##s", "!"]
    ids = [START] + [index[p] for p in pieces] + [END, index["cat"], PAD]
    assert tokenizer.detokenize(ids).numpy() == b"unaffable cats !"
    batch = tokenizer.detokenize(
        tf.ragged.constant([[index["the"], MASK, UNK], [PAD, 999, -3]])
    ).numpy()
    assert batch.tolist() == [b"the [MASK] [UNK]", b"[UNK] [UNK]"]
    roundtrip = tokenizer.detokenize(tokenizer(["The  cats,unaffable"]))
    assert roundtrip.numpy().tolist() == [b"the cats , unaffable"]
    # normalize() gives the same surface form without going through ids.
    assert tokenizer.normalize(["The  cats,unaffable"]).numpy().tolist() == [
        b"the cats , unaffable"
    ]
    assert tokenizer.normalize("A\tB!").numpy() == b"a b !"


def test_vocabulary_builder(corpus_vocab):
    assert tuple(corpus_vocab[:5]) == RESERVED_TOKENS
    assert len(corpus_vocab) <= 120 and len(set(corpus_vocab)) == len(corpus_vocab)
    assert "the" in corpus_vocab and "cats" in corpus_vocab
    # Deterministic, and every corpus word is covered without [UNK].
    assert build_wordpiece_vocabulary(CORPUS * 10, vocabulary_size=120) == corpus_vocab
    tokenizer = WordPieceTokenizer(corpus_vocab, sequence_length=64)
    assert UNK not in tokenizer.tokenize_ragged(CORPUS).flat_values.numpy()
    dataset = tf.data.Dataset.from_tensor_slices(CORPUS * 10)
    assert build_wordpiece_vocabulary(dataset, vocabulary_size=120) == corpus_vocab
    small = build_wordpiece_vocabulary(CORPUS, vocabulary_size=30)
    assert len(small) == 30


def test_config_round_trip_and_keras_file(tmp_path, corpus_vocab):
    tokenizer = WordPieceTokenizer(
        corpus_vocab, 12, strip_accents=True, add_end_token=True, name="wp"
    )
    config = tokenizer.get_config()
    assert config["vocabulary"] == corpus_vocab and config["sequence_length"] == 12
    clone = WordPieceTokenizer.from_config(config)
    restored = keras.layers.deserialize(keras.layers.serialize(tokenizer))
    texts = tf.constant(["The cats sat.", ""])
    for other in (clone, restored):
        np.testing.assert_array_equal(other(texts), tokenizer(texts))

    inputs = keras.Input(shape=(), dtype="string")
    outputs = keras.layers.Embedding(len(corpus_vocab), 3)(tokenizer(inputs))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(texts), model(texts))


def test_runs_in_tf_data_and_tf_function(corpus_vocab):
    tokenizer = WordPieceTokenizer(corpus_vocab, 10, add_start_token=True)
    dataset = tf.data.Dataset.from_tensor_slices(CORPUS).batch(2).map(tokenizer)
    eager = tokenizer(CORPUS).numpy()
    np.testing.assert_array_equal(np.concatenate(list(dataset.as_numpy_iterator())), eager)
    np.testing.assert_array_equal(tf.function(tokenizer.tokenize)(tf.constant(CORPUS)), eager)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vocabulary": ["a", "b"]}, "start with the reserved tokens"),
        ({"vocabulary": list(RESERVED_TOKENS)}, "at least one token besides"),
        ({"vocabulary": list(RESERVED_TOKENS) + ["a", "a"]}, "unique tokens"),
        ({"vocabulary": list(RESERVED_TOKENS) + [""]}, "non-empty strings"),
        ({"vocabulary": "vocab.txt"}, "expected a list of strings"),
        ({"sequence_length": 0}, "sequence_length"),
        ({"sequence_length": 2, "add_start_token": True, "add_end_token": True},
         "more than the 2 start/end"),
        ({"lowercase": 1}, "lowercase"),
    ],
)
def test_constructor_errors(kwargs, match):
    args = {"vocabulary": HAND_VOCAB, "sequence_length": 4, **kwargs}
    error = TypeError if "lowercase" in kwargs else ValueError
    with pytest.raises(error, match=match):
        WordPieceTokenizer(**args)


def test_call_and_builder_errors():
    tokenizer = WordPieceTokenizer(HAND_VOCAB, sequence_length=4)
    with pytest.raises(ValueError, match="expected a string tensor"):
        tokenizer(tf.constant([1, 2]))
    with pytest.raises(ValueError, match=r"shape \(\), \(B,\) or \(B, 1\)"):
        tokenizer(tf.constant([["a", "b"]]))
    with pytest.raises(ValueError, match="expected an integer tensor"):
        tokenizer.detokenize(tf.constant([1.0]))
    with pytest.raises(ValueError, match="rank 1 or 2"):
        tokenizer.detokenize(tf.zeros([1, 1, 1], tf.int32))
    with pytest.raises(ValueError, match=r"token_id.*\[0, 24\)"):
        tokenizer.id_to_token(24)
    assert tokenizer.id_to_token(5) == "un" and tokenizer.token_to_id("zzz") == UNK
    with pytest.raises(ValueError, match="expected more than 5"):
        build_wordpiece_vocabulary(["a b"], vocabulary_size=5)
    with pytest.raises(ValueError, match="at least one text"):
        build_wordpiece_vocabulary([], vocabulary_size=50)
    with pytest.raises(ValueError, match="expected strings"):
        build_wordpiece_vocabulary([1, 2], vocabulary_size=50)
    with pytest.raises(ValueError, match="at least one word"):
        build_wordpiece_vocabulary(["", "  "], vocabulary_size=50)
    with pytest.raises(ValueError, match="tf.data.Dataset of strings"):
        build_wordpiece_vocabulary(tf.data.Dataset.range(3), vocabulary_size=50)


def test_a_tight_size_keeps_the_continuations_words_need():
    # The learner lists the `##` characters it did not learn last, in
    # code-point order; cutting by position kept `##!`-like pieces (never
    # used: punctuation is split off) and dropped `##o`, `##u`, ...
    texts = ["Hello, world. Our sorry story: you run, you try; ~!@#$%^&*()+=?/|\\ ."] * 10
    texts += ["quick brown fox jumps over lazy dogs"] * 10
    small = build_wordpiece_vocabulary(texts, 75, min_frequency=1)
    assert len(small) == 75 and tuple(small[:5]) == RESERVED_TOKENS
    assert not [t for t in small if t.startswith("##") and not t[2:].isalnum()]
    for piece in ("##o", "##u", "##r", "##n", "##y"):
        assert piece in small
    tokenizer = WordPieceTokenizer(small, sequence_length=16)
    text = tokenizer.detokenize(tokenizer(["you run, sorry"])).numpy()[0]
    assert text == b"you run , sorry"
