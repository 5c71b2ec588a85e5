"""TFDS loaders, run offline on `tfds.testing.mock_data` (random examples
generated from each dataset's real features)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attention.data import IMDB_LABEL_NAMES
from keras_attention.data import load_imdb_reviews
from keras_attention.data import load_ted_hrlr_pt_en
from keras_attention.data import load_tiny_shakespeare
from keras_attention.data import make_classification_dataset
from keras_attention.data import make_language_model_dataset
from keras_attention.data import fit_tokenizer
from keras_attention.data import prepare_translation_data
from keras_attention.data import tfds_translation_pairs


def test_ted_pairs_feed_the_translation_pipeline():
    with tfds.testing.mock_data(num_examples=12):
        pairs = load_ted_hrlr_pt_en("train", download=False)
        assert pairs.element_spec == (
            tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)
        )
        listed = tfds_translation_pairs(pairs, max_pairs=5)
        data = prepare_translation_data(pairs, pairs, batch_size=4,
                                        vocabulary_size=60)
        (source, target_in), target_out = next(iter(data.train_dataset))
    assert len(listed) == 5 and all(isinstance(s, str) for pair in listed for s in pair)
    assert source.shape[0] == 4 and (target_in[:, 0].numpy() == 2).all()


def test_imdb_reviews():
    with tfds.testing.mock_data(num_examples=6):
        texts, labels, names = load_imdb_reviews("test", download=False)
    assert len(texts) == 6 and all(isinstance(t, str) for t in texts)
    assert labels.dtype == np.int32 and set(labels.tolist()) <= {0, 1}
    assert names == list(IMDB_LABEL_NAMES) == ["neg", "pos"]
    tokenizer = fit_tokenizer(texts, kind="character", sequence_length=16)
    x, y = next(iter(make_classification_dataset(texts, labels, tokenizer)))
    assert x.shape == (6, 16)


def test_tiny_shakespeare():
    with tfds.testing.mock_data(num_examples=3):
        text = load_tiny_shakespeare("validation", download=False)
    assert isinstance(text, str) and text.count("\n") == 2
    tokenizer = fit_tokenizer([text], kind="character", sequence_length=4)
    x, y = next(iter(make_language_model_dataset(text, tokenizer, batch_size=2)))
    np.testing.assert_array_equal(x[0, 1:], y[0, :-1])


def test_arguments_reach_tfds_load(monkeypatch):
    calls = []

    def fake_load(name, **kwargs):
        calls.append((name, kwargs))
        return tf.data.Dataset.from_tensor_slices((["a"], ["b"]))

    monkeypatch.setattr(tfds, "load", fake_load)
    load_ted_hrlr_pt_en("test[:10]", data_dir="/data", download=False, try_gcs=True)
    name, kwargs = calls[0]
    assert name == "ted_hrlr_translate/pt_to_en"
    assert kwargs == {
        "split": "test[:10]", "data_dir": "/data", "download": False,
        "try_gcs": True, "as_supervised": True, "shuffle_files": False,
    }


def test_missing_data_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'imdb_reviews' is not prepared.*download=False"):
        load_imdb_reviews(data_dir=str(tmp_path), download=False)
    with pytest.raises(ValueError, match="max_pairs"):
        tfds_translation_pairs(tf.data.Dataset.from_tensor_slices((["a"], ["b"])), 0)
