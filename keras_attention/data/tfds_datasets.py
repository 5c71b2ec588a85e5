"""TensorFlow Datasets loaders: TED Portuguese-English translation, IMDB
reviews, Tiny Shakespeare.

Thin wrappers around `tfds.load` that return what the rest of
`keras_attention.data` consumes: string pairs for `prepare_translation_data`,
`(texts, labels)` for `make_classification_dataset`, a text for
`make_language_model_dataset`. `download=True` fetches and prepares the data
on first use (network needed once); `download=False` reads only what is
already in `data_dir` and raises `FileNotFoundError` otherwise. `try_gcs`
(reading the prepared copy from Google Cloud Storage) is off by default.
"""

import numpy as np

from keras_attention.utils import validation

_TED = "ted_hrlr_translate/pt_to_en"
_IMDB = "imdb_reviews"
_SHAKESPEARE = "tiny_shakespeare"
IMDB_LABEL_NAMES = ("neg", "pos")


def _load(name, split, data_dir, download, try_gcs, as_supervised):
    import tensorflow_datasets as tfds

    try:
        return tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            download=download,
            try_gcs=try_gcs,
            as_supervised=as_supervised,
            shuffle_files=False,
        )
    except AssertionError as error:
        if download:
            raise
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared in data_dir={data_dir!r} "
            "and download=False. Run once with download=True (network "
            "needed) or point data_dir to a prepared copy. "
            f"(tfds said: {error})"
        ) from None


def load_ted_hrlr_pt_en(split="train", data_dir=None, download=True, try_gcs=False):
    """TED talks Portuguese -> English pairs (`ted_hrlr_translate/pt_to_en`).

    The data of the TensorFlow Transformer tutorial: about 52k training,
    1.2k validation and 1.8k test sentence pairs.

    Args:
        split: a TFDS split: `"train"`, `"validation"`, `"test"`, or a slice
            such as `"train[:10%]"`.
        data_dir: TFDS data directory (`None`: `~/tensorflow_datasets`).
        download: download and prepare the data if missing.
        try_gcs: read the prepared data from Google Cloud Storage.

    Returns:
        `tf.data.Dataset` of `(portuguese, english)` string scalars, ready
        for `prepare_translation_data` / `make_translation_dataset`.

    Raises:
        FileNotFoundError: with `download=False`, if the data is not in
            `data_dir`.

    Example:

    ```python
    import tensorflow_datasets as tfds
    from keras_attention.data import load_ted_hrlr_pt_en
    with tfds.testing.mock_data(num_examples=2):
        pairs = load_ted_hrlr_pt_en("validation", download=False)
        portuguese, english = next(iter(pairs))
    ```
    """
    return _load(_TED, split, data_dir, download, try_gcs, as_supervised=True)


def load_imdb_reviews(split="train", data_dir=None, download=True, try_gcs=False):
    """IMDB movie reviews with binary sentiment (`imdb_reviews`).

    25k training and 25k test reviews; labels 0 = negative, 1 = positive
    (`IMDB_LABEL_NAMES`).

    Args:
        split: `"train"`, `"test"` (or a slice such as `"train[:80%]"`).
        data_dir: TFDS data directory (`None`: `~/tensorflow_datasets`).
        download: download and prepare the data if missing.
        try_gcs: read the prepared data from Google Cloud Storage.

    Returns:
        `(texts, labels, label_names)`: list of str, int32 NumPy array,
        `["neg", "pos"]` -- the shape `make_classification_dataset` takes.

    Raises:
        FileNotFoundError: with `download=False`, if the data is not in
            `data_dir`.

    Example:

    ```python
    import tensorflow_datasets as tfds
    from keras_attention.data import load_imdb_reviews
    with tfds.testing.mock_data(num_examples=3):
        texts, labels, names = load_imdb_reviews("test", download=False)
    ```
    """
    dataset = _load(_IMDB, split, data_dir, download, try_gcs, as_supervised=True)
    texts, labels = [], []
    for text, label in dataset.batch(1024).as_numpy_iterator():
        texts.extend(t.decode("utf-8") for t in text)
        labels.extend(label.tolist())
    return texts, np.asarray(labels, np.int32), list(IMDB_LABEL_NAMES)


def load_tiny_shakespeare(split="train", data_dir=None, download=True, try_gcs=False):
    """The Tiny Shakespeare text (`tiny_shakespeare`), for language models.

    About 1M characters for training and 55k each for validation and test
    (Karpathy's char-rnn corpus).

    Args:
        split: `"train"`, `"validation"` or `"test"`.
        data_dir: TFDS data directory (`None`: `~/tensorflow_datasets`).
        download: download and prepare the data if missing.
        try_gcs: read the prepared data from Google Cloud Storage.

    Returns:
        str: the text of the split (its examples joined by newlines), ready
        for `make_language_model_dataset`.

    Raises:
        FileNotFoundError: with `download=False`, if the data is not in
            `data_dir`.

    Example:

    ```python
    import tensorflow_datasets as tfds
    from keras_attention.data import load_tiny_shakespeare
    with tfds.testing.mock_data(num_examples=1):
        text = load_tiny_shakespeare("test", download=False)
    ```
    """
    dataset = _load(
        _SHAKESPEARE, split, data_dir, download, try_gcs, as_supervised=False
    )
    pieces = [
        example["text"].decode("utf-8")
        for example in dataset.as_numpy_iterator()
    ]
    return "\n".join(pieces)


def tfds_translation_pairs(dataset, max_pairs=None):
    """A TFDS `(source, target)` dataset as a list of Python string pairs.

    Handy for BLEU on raw text and for sampling test sentences.

    Args:
        dataset: `tf.data.Dataset` of `(source, target)` string scalars.
        max_pairs: keep only the first `max_pairs` pairs (`None`: all).

    Returns:
        list of `(source, target)` str tuples.

    Raises:
        ValueError: for a non-positive `max_pairs`.

    Example:

    ```python
    import tensorflow as tf
    from keras_attention.data import tfds_translation_pairs
    ds = tf.data.Dataset.from_tensor_slices((["olá"], ["hello"]))
    tfds_translation_pairs(ds)
    ```
    """
    max_pairs = validation.check_positive_int(max_pairs, "max_pairs", allow_none=True)
    if max_pairs is not None:
        dataset = dataset.take(max_pairs)
    pairs = []
    for source, target in dataset.batch(1024).as_numpy_iterator():
        pairs.extend(
            (s.decode("utf-8"), t.decode("utf-8")) for s, t in zip(source, target)
        )
    return pairs
