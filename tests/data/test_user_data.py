"""The user's own data: folder per class, CSV, plain text files, splits;
every bad input names the file (and line)."""

import numpy as np
import pytest

from keras_attention.data import load_text_classification_csv
from keras_attention.data import load_text_classification_directory
from keras_attention.data import load_text_files
from keras_attention.data import split_examples


def _write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_directory_per_class(tmp_path):
    _write(tmp_path / "pos" / "b.txt", "great fun")
    _write(tmp_path / "pos" / "a.txt", "loved it")
    _write(tmp_path / "neg" / "deep" / "x.txt", "dull")
    _write(tmp_path / "neg" / "notes.md", "ignored")
    _write(tmp_path / "README.txt", "not a class")
    texts, labels, names = load_text_classification_directory(tmp_path)
    assert names == ["neg", "pos"]
    assert texts == ["dull", "loved it", "great fun"]
    np.testing.assert_array_equal(labels, [0, 1, 1])
    assert labels.dtype == np.int32
    texts, labels, _ = load_text_classification_directory(tmp_path, extensions=(".md", ".txt"))
    assert texts[:2] == ["dull", "ignored"]


def test_directory_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_text_classification_directory(tmp_path / "missing_dir")
    _write(tmp_path / "only_file.txt", "x")
    with pytest.raises(ValueError, match=r"empty dataset, expected one sub-folder"):
        load_text_classification_directory(tmp_path)
    (tmp_path / "pos").mkdir()
    with pytest.raises(ValueError, match=r"pos: empty class"):
        load_text_classification_directory(tmp_path)
    _write(tmp_path / "pos" / "blank.txt", "  \n")
    with pytest.raises(ValueError, match=r"blank.txt: empty file"):
        load_text_classification_directory(tmp_path)
    _write(tmp_path / "pos" / "blank.txt", b"ok\n\xff\xfe")
    with pytest.raises(ValueError, match=r"blank.txt:2: cannot decode"):
        load_text_classification_directory(tmp_path)


def test_csv(tmp_path):
    path = _write(
        tmp_path / "data.csv",
        'id,text,label,extra\n1,"great, fun",10\n2,"multi\nline",2,x\n\n3,dull,2\n',
    )
    texts, labels, names = load_text_classification_csv(path)
    assert texts == ["great, fun", "multi\nline", "dull"]
    assert names == ["2", "10"]  # numeric order when every label is a number
    np.testing.assert_array_equal(labels, [1, 0, 0])
    path = _write(tmp_path / "words.tsv", "review\tsentiment\nok\tpos\nbad\tneg\n")
    texts, labels, names = load_text_classification_csv(
        path, text_column="review", label_column="sentiment", delimiter="\t"
    )
    assert names == ["neg", "pos"] and labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    "content, match",
    [
        ("body,label\nx,1\n", r"bad.csv:1: missing column\(s\) \['text'\]"),
        ('text,label\n"two\nlines",a\n,b\n', r"bad.csv:4: malformed row, the `text`"),
        ("text,label\nonly text\n", r"bad.csv:2: malformed row, the `label`"),
        ("text,label\ngood,pos\ndull, boring and slow,neg\n",
         r"bad.csv:3: malformed row, 1 more field\(s\) than the header's 2 columns"),
        ("text,label\n", r"bad.csv: empty dataset, no data row"),
        ("", r"bad.csv: empty dataset, no header"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, content, match):
    path = _write(tmp_path / "bad.csv", content)
    with pytest.raises(ValueError, match=match):
        load_text_classification_csv(path)


def test_csv_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_text_classification_csv(tmp_path / "absent.csv")


def test_text_files(tmp_path):
    a = _write(tmp_path / "corpus" / "b.txt", "second")
    _write(tmp_path / "corpus" / "a.txt", "first")
    single = _write(tmp_path / "single.txt", "alone\n")
    assert load_text_files(single) == ["alone\n"]
    assert load_text_files(tmp_path / "corpus") == ["first", "second"]
    assert load_text_files([single, a]) == ["alone\n", "second"]
    with pytest.raises(FileNotFoundError, match="ghost.txt"):
        load_text_files([single, tmp_path / "ghost.txt"])
    _write(tmp_path / "empty.txt", "")
    with pytest.raises(ValueError, match="empty.txt: empty file"):
        load_text_files(tmp_path / "empty.txt")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="nothing: empty dataset"):
        load_text_files(tmp_path / "nothing")
    with pytest.raises(ValueError, match="empty dataset"):
        load_text_files([])


def test_split_examples():
    items = list(range(20))
    train, valid, test = split_examples(items, 0.2, 0.1, seed=3)
    assert (len(train), len(valid), len(test)) == (14, 4, 2)
    assert sorted(train + valid + test) == items
    assert split_examples(items, 0.2, 0.1, seed=3) == (train, valid, test)
    assert split_examples(items, 0.2, 0.1, seed=4) != (train, valid, test)
    assert split_examples(items, 0.0, 0.0)[0] != items  # shuffled
    with pytest.raises(ValueError, match="expected a sum below 1"):
        split_examples(items, 0.5, 0.5)
    with pytest.raises(ValueError, match="validation_fraction"):
        split_examples(items, -0.1)
    with pytest.raises(ValueError, match="non-empty training split"):
        split_examples([1, 2], 0.5, 0.4)
