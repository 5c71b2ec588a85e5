"""The user's own data: classification from a folder per class or a CSV,
generation from plain-text files, and a deterministic split helper.

(Translation pairs from a TSV file: `load_translation_tsv`.)

Every loader fails early with an error that names the file (and the line,
where there is one): `FileNotFoundError` for a missing path, `ValueError`
for an empty dataset, a malformed row or undecodable text.
"""

import csv
import io
import os
import random

import numpy as np

from keras_attention.utils import validation


def _decode(path, data, encoding):
    """Bytes -> text; an error names the file and the line."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: cannot decode the text as {encoding}: {error.reason}"
        ) from None
    return text.lstrip("\ufeff")


def _read_text(path, encoding):
    with open(path, "rb") as handle:
        return _decode(path, handle.read(), encoding)


def _files_under(directory, extensions):
    """Files of `directory` (recursive) with one of `extensions`, sorted."""
    found = []
    for root, _, files in os.walk(directory):
        for name in files:
            if name.lower().endswith(tuple(e.lower() for e in extensions)):
                found.append(os.path.join(root, name))
    return sorted(found)


def load_text_classification_directory(
    directory, extensions=(".txt",), encoding="utf-8"
):
    """Texts and labels from a directory with one sub-folder per class.

    The `keras.utils.text_dataset_from_directory` layout:
    `directory/<class name>/<any depth>/<file>.txt`. Class names are the
    sub-folder names in alphanumeric order (label = index); each file is one
    example; files are read in sorted order.

    Args:
        directory: path of the top directory.
        extensions: file-name endings to read (case-insensitive).
        encoding: text encoding of the files.

    Returns:
        `(texts, labels, class_names)`: list of str, int32 array, list of str.

    Raises:
        FileNotFoundError: if `directory` does not exist.
        ValueError: naming the directory if it has no class sub-folder or a
            class has no file, naming the file if it is empty or cannot be
            decoded.

    Example:

    ```python
    import pathlib, tempfile
    from keras_attention.data import load_text_classification_directory
    root = pathlib.Path(tempfile.mkdtemp())
    for label, text in [("neg", "dull"), ("pos", "great fun")]:
        (root / label).mkdir()
        (root / label / "a.txt").write_text(text)
    load_text_classification_directory(root)
    ```
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Classification directory not found: {directory}")
    class_names = sorted(
        name
        for name in os.listdir(directory)
        if os.path.isdir(os.path.join(directory, name)) and not name.startswith(".")
    )
    if not class_names:
        raise ValueError(
            f"{directory}: empty dataset, expected one sub-folder per class "
            "(the keras.utils.text_dataset_from_directory layout)"
        )
    texts, labels = [], []
    for label, name in enumerate(class_names):
        files = _files_under(os.path.join(directory, name), extensions)
        if not files:
            raise ValueError(
                f"{os.path.join(directory, name)}: empty class, no file ending "
                f"in {list(extensions)}"
            )
        for path in files:
            text = _read_text(path, encoding)
            if not text.strip():
                raise ValueError(f"{path}: empty file")
            texts.append(text)
            labels.append(label)
    return texts, np.asarray(labels, np.int32), class_names


def _sort_names(names):
    """Class names in numeric order when all are integers, else alphabetic."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def load_text_classification_csv(
    path, text_column="text", label_column="label", encoding="utf-8", delimiter=","
):
    """Texts and labels from a CSV file with a header row.

    Args:
        path: path of the CSV file.
        text_column: name of the text column.
        label_column: name of the label column; labels are any strings
            (class names), sorted numerically when all are integers, else
            alphabetically (label = index).
        encoding: text encoding of the file.
        delimiter: field delimiter.

    Returns:
        `(texts, labels, class_names)`: list of str, int32 array, list of str.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming the file for a missing header or column or no
            data row, and the line for a row with a missing or empty text or
            label or undecodable text.

    Example:

    ```python
    import pathlib, tempfile
    from keras_attention.data import load_text_classification_csv
    path = pathlib.Path(tempfile.mkdtemp()) / "reviews.csv"
    path.write_text('text,label\\n"great, fun",pos\\ndull,neg\\n')
    load_text_classification_csv(path)
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Classification CSV file not found: {path}")
    reader = csv.DictReader(io.StringIO(_read_text(path, encoding), newline=""),
                            delimiter=delimiter)
    header = reader.fieldnames
    if not header:
        raise ValueError(f"{path}: empty dataset, no header row")
    missing = [c for c in (text_column, label_column) if c not in header]
    if missing:
        raise ValueError(
            f"{path}:1: missing column(s) {missing}; the header has {header}"
        )
    texts, names = [], []
    for row in reader:
        if not any((v or "").strip() for k, v in row.items() if k is not None):
            continue
        extra = row.get(None)  # DictReader's `restkey`: fields past the header
        if extra:
            raise ValueError(
                f"{path}:{reader.line_num}: malformed row, {len(extra)} more "
                f"field(s) than the header's {len(header)} columns (quote a "
                f"field that contains the delimiter {delimiter!r})"
            )
        text = row.get(text_column)
        label = row.get(label_column)
        for column, value in ((text_column, text), (label_column, label)):
            if value is None or not value.strip():
                raise ValueError(
                    f"{path}:{reader.line_num}: malformed row, the "
                    f"`{column}` field is missing or empty"
                )
        texts.append(text)
        names.append(label.strip())
    if not texts:
        raise ValueError(f"{path}: empty dataset, no data row after the header")
    class_names = _sort_names(set(names))
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.asarray([index[n] for n in names], np.int32)
    return texts, labels, class_names


def load_text_files(paths, extensions=(".txt",), encoding="utf-8"):
    """Plain-text documents for language modelling.

    Args:
        paths: a file, a directory (its files ending in `extensions`,
            recursively, in sorted order) or a list of files/directories.
        extensions: file-name endings read from directories.
        encoding: text encoding of the files.

    Returns:
        list of str, one document per file, in order.

    Raises:
        FileNotFoundError: for a path that does not exist.
        ValueError: naming the file for an empty or undecodable file, or the
            directory if it holds no matching file.

    Example:

    ```python
    import pathlib, tempfile
    from keras_attention.data import load_text_files
    path = pathlib.Path(tempfile.mkdtemp()) / "poem.txt"
    path.write_text("Tyger Tyger, burning bright\\n")
    load_text_files(path)
    ```
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    files = []
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            found = _files_under(path, extensions)
            if not found:
                raise ValueError(
                    f"{path}: empty dataset, no file ending in {list(extensions)}"
                )
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"Text file not found: {path}")
    documents = []
    for path in files:
        text = _read_text(path, encoding)
        if not text.strip():
            raise ValueError(f"{path}: empty file")
        documents.append(text)
    if not documents:
        raise ValueError("empty dataset: no text file given")
    return documents


def split_examples(examples, validation_fraction=0.1, test_fraction=0.1, seed=0):
    """Deterministic shuffled train / validation / test split.

    Args:
        examples: a sequence (e.g. translation pairs, or
            `list(zip(texts, labels))`).
        validation_fraction: fraction for validation, in [0, 1).
        test_fraction: fraction for test, in [0, 1).
        seed: shuffle seed.

    Returns:
        `(train, validation, test)` lists; the validation and test sizes are
        `round(fraction * n)`.

    Raises:
        ValueError: for fractions summing to 1 or more, or too few examples
            to leave a non-empty training split.

    Example:

    ```python
    from keras_attention.data import split_examples
    train, valid, test = split_examples(list(range(10)), 0.2, 0.2)
    len(train), len(valid), len(test)
    ```
    """
    validation_fraction = validation.check_rate(
        validation_fraction, "validation_fraction"
    )
    test_fraction = validation.check_rate(test_fraction, "test_fraction")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            "Received an invalid value for arguments `validation_fraction` and "
            "`test_fraction`, expected a sum below 1. Received: "
            f"validation_fraction={validation_fraction}, "
            f"test_fraction={test_fraction}"
        )
    examples = list(examples)
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    num_valid = round(validation_fraction * len(examples))
    num_test = round(test_fraction * len(examples))
    num_train = len(examples) - num_valid - num_test
    if num_train < 1:
        raise ValueError(
            "Received an invalid value for argument `examples`, expected "
            "enough examples for a non-empty training split. "
            f"Received: {len(examples)} examples"
        )
    shuffled = [examples[i] for i in order]
    return (
        shuffled[:num_train],
        shuffled[num_train : num_train + num_valid],
        shuffled[num_train + num_valid :],
    )
