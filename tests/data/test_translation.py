"""The generated dates task (checked by an independent parser), the
teacher-forcing pipeline and the TSV loader with its errors."""

import datetime

import numpy as np
import pytest
import tensorflow as tf

from keras_attention.data import CharacterTokenizer
from keras_attention.data import date_in_words
from keras_attention.data import date_translation_task
from keras_attention.data import load_translation_tsv
from keras_attention.data import make_translation_dataset
from keras_attention.data import prepare_translation_data
from keras_attention.data import translation_pairs
from keras_attention.data import translation_tokenizers
from keras_attention.data import year_in_words

START, END, PAD = 2, 3, 0

# --- an independent words -> date parser -------------------------------------
_UNITS = dict(zip(
    "one two three four five six seven eight nine".split(), range(1, 10)))
_TEENS = dict(zip(
    ("ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
     "eighteen nineteen").split(), range(10, 20)))
_TENS = dict(zip("twenty thirty forty fifty sixty seventy eighty ninety".split(),
                 range(20, 100, 10)))
_ORD_UNITS = dict(zip(
    "first second third fourth fifth sixth seventh eighth ninth".split(),
    range(1, 10)))
_ORD_TEENS = dict(zip(
    ("tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth "
     "seventeenth eighteenth nineteenth").split(), range(10, 20)))
_MONTHS = ("january february march april may june july august september "
           "october november december").split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()


def _number(words):
    """'ninety nine' -> 99, 'five' -> 5, 'twenty' -> 20."""
    if len(words) == 1:
        return {**_UNITS, **_TEENS, **_TENS}[words[0]]
    assert len(words) == 2
    return _TENS[words[0]] + _UNITS[words[1]]


def _ordinal(words):
    if len(words) == 1:
        w = words[0]
        return {**_ORD_UNITS, **_ORD_TEENS, "twentieth": 20, "thirtieth": 30}[w]
    return _TENS[words[0]] + _ORD_UNITS[words[1]]


def _year(words):
    if words[:2] == ["two", "thousand"]:
        rest = words[2:]
        if rest[:1] == ["and"]:
            rest = rest[1:]
        return 2000 + (_number(rest) if rest else 0)
    if words[:2] == ["nineteen", "hundred"]:
        rest = words[2:]
        return 1900 + (_number(rest[1:]) if rest else 0)
    century = {"nineteen": 1900, "twenty": 2000}[words[0]]
    if words[1] == "oh":
        return century + _UNITS[words[2]]
    return century + _number(words[1:])


def parse_date_words(text):
    words = text.split()
    weekday = None
    if words[0] in _WEEKDAYS:
        weekday = _WEEKDAYS.index(words[0])
        words = words[1:]
    if words[0] == "the":
        words = words[1:]
    month_at = next(i for i, w in enumerate(words) if w in _MONTHS)
    month = _MONTHS.index(words[month_at]) + 1
    if month_at == 0:  # month [the] day year
        rest = words[1:]
        if rest[0] == "the":
            rest = rest[1:]
        # the ordinal is 1 or 2 words; its last word is an ordinal word.
        size = 1 if rest[0] in {**_ORD_UNITS, **_ORD_TEENS, "twentieth": 0,
                                "thirtieth": 0} else 2
        day, year_words = _ordinal(rest[:size]), rest[size:]
    else:  # day of month year
        day_words = words[:month_at]
        if day_words[-1] == "of":
            day_words = day_words[:-1]
        day, year_words = _ordinal(day_words), words[month_at + 1:]
    date = datetime.date(_year(year_words), month, day)
    if weekday is not None:
        assert date.weekday() == weekday, text
    return date


# --- tests --------------------------------------------------------------------
def test_year_in_words_hand_cases():
    assert year_in_words(1900) == "nineteen hundred"
    assert year_in_words(1905, 0) == "nineteen oh five"
    assert year_in_words(1905, 1) == "nineteen hundred and five"
    assert year_in_words(1999) == "nineteen ninety nine"
    assert year_in_words(2000) == "two thousand"
    assert year_in_words(2005, 0) == "two thousand and five"
    assert year_in_words(2005, 1) == "two thousand five"
    assert year_in_words(2005, 2) == "two thousand and five"
    assert year_in_words(2021, 2) == "twenty twenty one"
    assert year_in_words(2040) == "two thousand and forty"
    for bad in (1899, 2100, 2000.0):
        with pytest.raises(ValueError, match=r"year.*\[1900, 2099\]"):
            year_in_words(bad)


def test_date_in_words_reorders():
    date = datetime.date(2005, 3, 3)  # a Thursday
    assert date_in_words(date, 0) == "the third of march two thousand and five"
    assert date_in_words(date, 3, 1) == "march third two thousand five"
    assert date_in_words(datetime.date(1987, 11, 21), 2) == (
        "november the twenty first nineteen eighty seven"
    )
    assert date_in_words(date, 4).startswith("thursday the third of march")


def test_every_generated_source_parses_to_its_target():
    pairs = translation_pairs(3000, seed=7)
    for words, iso in pairs:
        assert parse_date_words(words).isoformat() == iso
    def opening(words):
        first = words.split()[0]
        if first in _WEEKDAYS:
            return "weekday"
        return "month" if first in _MONTHS else "the" if first == "the" else "day"

    assert {opening(p[0]) for p in pairs} == {"weekday", "month", "the", "day"}
    sources = " | ".join(p[0] for p in pairs)
    for style in (" oh ", " hundred and ", "thousand and", "two thousand ",
                  "twenty twenty", "nineteen ninety"):
        assert style in sources, style
    assert len({p[1] for p in pairs}) > 2900  # dates spread over 200 years


def test_pairs_are_deterministic_and_splits_disjoint():
    assert translation_pairs(50, seed=3) == translation_pairs(50, seed=3)
    assert translation_pairs(50, seed=3) != translation_pairs(50, seed=4)
    train = {p[1] for p in translation_pairs(4000, split="train")}
    valid = {p[1] for p in translation_pairs(500, split="validation")}
    test = {p[1] for p in translation_pairs(500, split="test")}
    assert not (train & valid) and not (train & test) and not (valid & test)
    reverse = translation_pairs(20, seed=1, reverse=True)
    assert [(b, a) for a, b in translation_pairs(20, seed=1)] == reverse
    with pytest.raises(ValueError, match="split"):
        translation_pairs(5, split="dev")
    with pytest.raises(ValueError, match="num"):
        translation_pairs(0)


def test_teacher_forcing_batches():
    pairs = translation_pairs(40, seed=2)
    source_tok, target_tok = translation_tokenizers(pairs, target_kind="character")
    assert isinstance(target_tok, CharacterTokenizer)
    assert target_tok.sequence_length == 10 + 2  # ISO date + [START] + [END]
    dataset = make_translation_dataset(pairs, source_tok, target_tok, batch_size=16)
    batches = list(dataset.as_numpy_iterator())
    assert [b[1].shape[0] for b in batches] == [16, 16, 8]
    (source, target_in), target_out = batches[0]
    assert source.shape == (16, source_tok.sequence_length)
    assert target_in.shape == target_out.shape == (16, 11)
    assert (target_in[:, 0] == START).all()
    np.testing.assert_array_equal(target_in[:, 1:], target_out[:, :-1])
    assert (target_out[:, -1] == END).all()
    decoded = target_tok.detokenize(target_out).numpy()
    assert [d.decode() for d in decoded] == [p[1] for p in pairs[:16]]
    words = source_tok.detokenize(source).numpy()
    assert [w.decode() for w in words] == [p[0] for p in pairs[:16]]


def test_pipeline_accepts_a_tf_data_dataset_and_shuffles():
    pairs = translation_pairs(24, seed=5)
    source_tok, target_tok = translation_tokenizers(
        pairs, target_kind="character", source_sequence_length=30
    )
    dataset = tf.data.Dataset.from_tensor_slices(
        ([p[0] for p in pairs], [p[1] for p in pairs])
    )
    plain = make_translation_dataset(dataset, source_tok, target_tok, batch_size=24)
    shuffled = make_translation_dataset(
        pairs, source_tok, target_tok, batch_size=24, shuffle=True, seed=1
    )
    (a, _), _ = next(iter(plain))
    (b, _), _ = next(iter(shuffled))
    assert a.shape == (24, 30)
    assert not np.array_equal(a, b)
    assert sorted(map(tuple, a.numpy())) == sorted(map(tuple, b.numpy()))


def test_pipeline_errors():
    pairs = translation_pairs(8)
    source_tok, target_tok = translation_tokenizers(pairs, target_kind="character")
    with pytest.raises(ValueError, match="add_start_token=True and add_end_token=True"):
        make_translation_dataset(pairs, source_tok, source_tok)
    with pytest.raises(ValueError, match="at least one"):
        make_translation_dataset([], source_tok, target_tok)
    with pytest.raises(ValueError, match=r"\(source, target\) pairs"):
        make_translation_dataset([("a", "b", "c")], source_tok, target_tok)
    with pytest.raises(ValueError, match="batch_size"):
        make_translation_dataset(pairs, source_tok, target_tok, batch_size=0)
    with pytest.raises(ValueError, match="source_kind"):
        translation_tokenizers(pairs, source_kind="bpe")


def test_date_task_end_to_end():
    data = date_translation_task(num_train=64, num_validation=16, num_test=8,
                                 batch_size=32)
    assert len(data.train_pairs) == 64 and len(data.test_pairs) == 8
    (source, target_in), target_out = next(iter(data.validation_dataset))
    assert source.shape[0] == 16 and target_in.shape == target_out.shape
    assert data.source_tokenizer.lowercase
    reverse = date_translation_task(num_train=32, num_validation=4, num_test=4,
                                    reverse=True)
    assert isinstance(reverse.source_tokenizer, CharacterTokenizer)


# --- TSV -----------------------------------------------------------------------
def test_tsv_loader_tatoeba_format(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text(
        "\ufeffGo.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\n"
        "\n"
        "Hi.\tSalut !\tCC-BY 2.0\n"
        "Run!\tCours !\r\n",
        encoding="utf-8",
    )
    assert load_translation_tsv(path) == [
        ("Go.", "Va !"), ("Hi.", "Salut !"), ("Run!", "Cours !")
    ]
    assert load_translation_tsv(path, max_pairs=2, reverse=True) == [
        ("Va !", "Go."), ("Salut !", "Hi.")
    ]
    data = prepare_translation_data(load_translation_tsv(path) * 4, batch_size=4)
    (source, target_in), target_out = next(iter(data.train_dataset))
    assert source.shape[0] == 4 and data.validation_dataset is None


@pytest.mark.parametrize(
    "content, match",
    [
        ("Go.\tVa !\nno tab here\n", r"pairs.tsv:2: malformed line.*no tab"),
        ("Go.\tVa !\n\nHi.\t \n", r"pairs.tsv:3: malformed line, the target column"),
        ("\tVa !\n", r"pairs.tsv:1: malformed line, the source column"),
        ("\n\n", r"pairs.tsv: empty dataset"),
        ("", r"pairs.tsv: empty dataset"),
    ],
)
def test_tsv_errors_name_file_and_line(tmp_path, content, match):
    path = tmp_path / "pairs.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_translation_tsv(path)


def test_tsv_missing_and_undecodable(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        load_translation_tsv(tmp_path / "nope.tsv")
    path = tmp_path / "latin1.tsv"
    path.write_bytes(b"a\tb\ncaf\xe9\tx\n")
    with pytest.raises(ValueError, match=r"latin1.tsv:2: cannot decode"):
        load_translation_tsv(path)
    assert load_translation_tsv(path, encoding="latin-1")[1] == ("café", "x")
