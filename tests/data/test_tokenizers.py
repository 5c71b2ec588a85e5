"""Shared tokenizer machinery: vocabulary checks, accent folding,
`fit_tokenizer`, mixed precision, and SavedModel export that loads with
plain TensorFlow (no tensorflow-text, no keras_attention)."""

import json
import os
import subprocess
import sys
import textwrap
import unicodedata

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention.data import RESERVED_TOKENS
from keras_attention.data import CharacterTokenizer
from keras_attention.data import WordPieceTokenizer
from keras_attention.data import build_wordpiece_vocabulary
from keras_attention.data import check_vocabulary
from keras_attention.data import fit_tokenizer
from keras_attention.data import tokenizers

TEXTS = ["The cat sat on the mat.", "Une fenêtre, déjà ouverte!", "", "x" * 300]


def test_reserved_token_ids():
    assert RESERVED_TOKENS == ("[PAD]", "[UNK]", "[START]", "[END]", "[MASK]")
    vocab = list(RESERVED_TOKENS) + ["a"]
    tokenizer = CharacterTokenizer(vocab, 3)
    assert (
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
        tokenizer.start_token_id,
        tokenizer.end_token_id,
        tokenizer.mask_token_id,
    ) == tuple(vocab.index(t) for t in RESERVED_TOKENS)
    assert tokenizer.vocabulary_size == 6 and tokenizer.get_vocabulary() == vocab


def test_check_vocabulary_accepts_bytes_and_arrays():
    vocab = [t.encode() for t in RESERVED_TOKENS] + [b"a"]
    assert check_vocabulary(vocab) == list(RESERVED_TOKENS) + ["a"]
    assert check_vocabulary(np.array(list(RESERVED_TOKENS) + ["b"]))[-1] == "b"
    with pytest.raises(ValueError, match="unique tokens. Received duplicates"):
        check_vocabulary(list(RESERVED_TOKENS) + ["b", "b"])


def test_accent_folding_matches_unicodedata():
    letters = "àáâãäåçèéêëìíîïñòóôõöùúûüýÿāăąćčďēěğīłńňōőřśšşťūůűźżžșțÀÉÎÕÜŸ"
    expected = "".join(
        c for c in unicodedata.normalize("NFD", letters) if unicodedata.category(c) != "Mn"
    )
    got = tokenizers._standardize(
        tf.constant(letters + "e\u0301"), False, tokenizers._accent_table()
    )
    assert got.numpy().decode() == expected + "e"
    # Letters without a decomposition are kept (ł, ø, ß).
    kept = tokenizers._standardize(tf.constant("łøß"), True, tokenizers._accent_table())
    assert kept.numpy().decode() == "łøß"


def test_invalid_utf8_is_replaced_not_fatal():
    vocab = list(RESERVED_TOKENS) + ["a"]
    tokenizer = CharacterTokenizer(vocab, 4)
    ids = tokenizer(tf.constant([b"a\xffa"])).numpy()
    np.testing.assert_array_equal(ids, [[5, 1, 5, 0]])


def test_fit_tokenizer_default_length_is_longest_plus_specials():
    texts = ["ab", "abcde", "a"]
    tokenizer = fit_tokenizer(texts, kind="character", add_start_token=True,
                              add_end_token=True)
    assert isinstance(tokenizer, CharacterTokenizer)
    assert tokenizer.sequence_length == 5 + 2
    wordpiece = fit_tokenizer(["one two three", "four"], vocabulary_size=40,
                              sequence_length=9)
    assert isinstance(wordpiece, WordPieceTokenizer)
    assert wordpiece.sequence_length == 9 and wordpiece.lowercase
    with pytest.raises(ValueError, match="kind"):
        fit_tokenizer(texts, kind="bpe")


def test_output_is_int32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    tokenizer = CharacterTokenizer(list(RESERVED_TOKENS) + ["a"], 3)
    assert tokenizer("aa").dtype == tf.int32


def test_saved_model_loads_with_plain_tensorflow(tmp_path):
    """Export a raw-string model and tokenize/detokenize endpoints; a fresh
    process that imports only TensorFlow reproduces the Keras outputs."""
    vocab = build_wordpiece_vocabulary(TEXTS[:2] * 10, vocabulary_size=80)
    wordpiece = WordPieceTokenizer(vocab, 8, strip_accents=True, add_end_token=True)
    chars = fit_tokenizer(TEXTS[:2], kind="character", sequence_length=12)
    inputs = keras.Input(shape=(), dtype="string")
    ids = wordpiece(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(
        keras.layers.Embedding(len(vocab), 4)(ids)
    )
    model = keras.Model(inputs, [pooled, chars(inputs)])

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(wordpiece)
    string_spec = tf.TensorSpec([None], tf.string)
    archive.add_endpoint("serve", model.__call__, input_signature=[string_spec])
    archive.add_endpoint(
        "detokenize",
        lambda x: wordpiece.detokenize(x),
        input_signature=[tf.TensorSpec([None, None], tf.int32)],
    )
    export_dir = str(tmp_path / "export")
    archive.write_out(export_dir, verbose=False)

    batch = tf.constant(TEXTS)
    expected_pooled, expected_chars = model(batch)
    expected_text = wordpiece.detokenize(wordpiece(batch))
    script = textwrap.dedent(
        f"""
        import json, sys
        import tensorflow as tf
        loaded = tf.saved_model.load({export_dir!r})
        texts = tf.constant({json.dumps(TEXTS)})
        pooled, chars = loaded.serve(texts)
        ids = tf.constant({wordpiece(batch).numpy().tolist()}, tf.int32)
        print(json.dumps({{
            "pooled": pooled.numpy().tolist(),
            "chars": chars.numpy().tolist(),
            "text": [t.decode() for t in loaded.detokenize(ids).numpy()],
            "one": loaded.serve(texts[:1])[1].numpy().tolist(),
            "foreign": sorted(m for m in sys.modules
                              if m.startswith(("tensorflow_text", "keras_attention"))),
        }}))
        """
    )
    env = {**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True,
        cwd=tmp_path, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["foreign"] == []
    np.testing.assert_allclose(got["pooled"], expected_pooled, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got["chars"], expected_chars)
    np.testing.assert_array_equal(got["one"], expected_chars[:1])
    assert got["text"] == [t.decode() for t in expected_text.numpy()]
