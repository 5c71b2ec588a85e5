"""Translation data: a generated dates task, a TSV loader, tokenizers fitted
on the pairs and the teacher-forcing `tf.data` pipeline.

The generated task translates dates written out in English words into ISO
8601 (`"the third of march two thousand and five"` -> `"2005-03-03"`), or
back with `reverse=True`. It has real linguistic structure -- ordinal and
cardinal number words, compound numbers ("twenty first"), several year
styles ("nineteen oh five", "two thousand and five", "twenty twenty one"),
an optional weekday the model must learn to ignore -- and reordering: the
words come day-month-year or month-day-year, the ISO form is
year-month-day. Dates are assigned to the train / validation / test splits
by a fixed hash of the date, so evaluation dates are never seen in training.
"""

import dataclasses
import datetime
import hashlib
import os
import random

import tensorflow as tf

from keras_attention.data import tokenizers
from keras_attention.utils import validation

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve "
    "thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_ONES = (
    "_ first second third fourth fifth sixth seventh eighth ninth tenth "
    "eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth "
    "eighteenth nineteenth"
).split()
_ORDINAL_TENS = {20: "twentieth", 30: "thirtieth"}
_MONTHS = (
    "january february march april may june july august september october "
    "november december"
).split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_TEMPLATES = (
    "the {day} of {month} {year}",
    "{day} of {month} {year}",
    "{month} the {day} {year}",
    "{month} {day} {year}",
    "{weekday} the {day} of {month} {year}",
)
_FIRST_DATE = datetime.date(1900, 1, 1)
_LAST_DATE = datetime.date(2099, 12, 31)
SPLITS = ("train", "validation", "test")


def _cardinal(n):
    """0-99 in words."""
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] if ones == 0 else f"{_TENS[tens]} {_ONES[ones]}"


def _ordinal(n):
    """1-31 as an ordinal in words."""
    if n < 20:
        return _ORDINAL_ONES[n]
    tens, ones = divmod(n, 10)
    if ones == 0:
        return _ORDINAL_TENS[n]
    return f"{_TENS[tens]} {_ORDINAL_ONES[ones]}"


def year_in_words(year, style=0):
    """A year from 1900 to 2099 in English words.

    Args:
        year: integer in [1900, 2099].
        style: which of the valid spoken forms to use (taken modulo their
            number): for 1905 `"nineteen oh five"` or `"nineteen hundred and
            five"`; for 2005 `"two thousand and five"` or `"two thousand
            five"`; for 2021 also `"twenty twenty one"`.

    Returns:
        str.

    Raises:
        ValueError: if `year` is outside [1900, 2099].

    Example:

    ```python
    from keras_attention.data import year_in_words
    [year_in_words(1999), year_in_words(2005), year_in_words(2021, style=2)]
    ```
    """
    if not isinstance(year, int) or not 1900 <= year <= 2099:
        raise ValueError(
            "Received an invalid value for argument `year`, expected an "
            f"integer in [1900, 2099]. Received: year={year!r}"
        )
    century, rest = divmod(year, 100)
    if century == 19:
        if rest == 0:
            forms = ["nineteen hundred"]
        elif rest < 10:
            forms = [
                f"nineteen oh {_ONES[rest]}",
                f"nineteen hundred and {_ONES[rest]}",
            ]
        else:
            forms = [f"nineteen {_cardinal(rest)}"]
    else:
        if rest == 0:
            forms = ["two thousand"]
        else:
            forms = [
                f"two thousand and {_cardinal(rest)}",
                f"two thousand {_cardinal(rest)}",
            ]
            if rest >= 10:
                forms.append(f"twenty {_cardinal(rest)}")
    return forms[style % len(forms)]


def date_in_words(date, template=0, style=0):
    """A `datetime.date` written out in English words.

    Args:
        date: `datetime.date` between 1900-01-01 and 2099-12-31.
        template: which word order to use, modulo the 5 templates: `"the
            {day} of {month} {year}"`, `"{day} of {month} {year}"`, `"{month}
            the {day} {year}"`, `"{month} {day} {year}"`, `"{weekday} the
            {day} of {month} {year}"`.
        style: year style, see `year_in_words`.

    Returns:
        str.

    Raises:
        ValueError: if the year is outside [1900, 2099].

    Example:

    ```python
    import datetime
    from keras_attention.data import date_in_words
    date_in_words(datetime.date(2005, 3, 3))
    ```
    """
    return _TEMPLATES[template % len(_TEMPLATES)].format(
        day=_ordinal(date.day),
        month=_MONTHS[date.month - 1],
        year=year_in_words(date.year, style),
        weekday=_WEEKDAYS[date.weekday()],
    )


def _date_split(ordinal):
    """Fixed split of a date: 80% train, 10% validation, 10% test."""
    bucket = int(hashlib.md5(str(ordinal).encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def translation_pairs(num, seed=0, split="train", reverse=False):
    """Generated (words, ISO date) translation pairs.

    Deterministic for a given `(num, seed, split)`. Dates are drawn
    uniformly from 1900-01-01..2099-12-31 among the dates of `split`
    (a fixed hash puts about 80% of dates in train, 10% in validation, 10%
    in test), the word order and year style uniformly among the valid ones.

    Args:
        num: number of pairs.
        seed: random seed.
        split: `"train"`, `"validation"` or `"test"`.
        reverse: give `(iso, words)` pairs instead of `(words, iso)`.

    Returns:
        list of `(source, target)` string tuples, e.g.
        `("the third of march two thousand and five", "2005-03-03")`.

    Raises:
        ValueError: for a non-positive `num` or an unknown `split`.

    Example:

    ```python
    from keras_attention.data import translation_pairs
    translation_pairs(3, seed=1)
    ```
    """
    num = validation.check_positive_int(num, "num")
    validation.check_one_of(split, "split", SPLITS)
    rng = random.Random(f"{seed}-{split}")
    first, last = _FIRST_DATE.toordinal(), _LAST_DATE.toordinal()
    pairs = []
    while len(pairs) < num:
        ordinal = rng.randint(first, last)
        if _date_split(ordinal) != split:
            continue
        date = datetime.date.fromordinal(ordinal)
        words = date_in_words(date, rng.randrange(len(_TEMPLATES)), rng.randrange(6))
        iso = date.isoformat()
        pairs.append((iso, words) if reverse else (words, iso))
    return pairs


def load_translation_tsv(path, max_pairs=None, reverse=False, encoding="utf-8"):
    """Translation pairs from a `source<TAB>target` file (Tatoeba/Anki).

    Columns after the second (e.g. Tatoeba attribution) are ignored; blank
    lines are skipped; fields are stripped of surrounding whitespace.

    Args:
        path: path of the TSV file.
        max_pairs: keep only the first `max_pairs` pairs (`None`: all).
        reverse: swap the columns (translate target -> source).
        encoding: text encoding of the file.

    Returns:
        list of `(source, target)` string tuples in file order.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: naming the file and line for a line without a tab or
            with an empty source or target, undecodable text, or a file
            without any pair.

    Example:

    ```python
    import pathlib, tempfile
    from keras_attention.data import load_translation_tsv
    path = pathlib.Path(tempfile.mkdtemp()) / "pairs.tsv"
    path.write_text("Go.\\tVa !\\tCC-BY 2.0 (France)\\nHi.\\tSalut !\\n")
    load_translation_tsv(path)
    ```
    """
    path = os.fspath(path)
    max_pairs = validation.check_positive_int(max_pairs, "max_pairs", allow_none=True)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Translation TSV file not found: {path}")
    pairs = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path}:{number}: cannot decode the line as {encoding}: "
                    f"{error}"
                ) from None
            if number == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise ValueError(
                    f"{path}:{number}: malformed line, expected "
                    f"`source<TAB>target`, found no tab: {line[:80]!r}"
                )
            source, target = fields[0].strip(), fields[1].strip()
            if not source or not target:
                column = "source" if not source else "target"
                raise ValueError(
                    f"{path}:{number}: malformed line, the {column} column is "
                    f"empty: {line[:80]!r}"
                )
            pairs.append((target, source) if reverse else (source, target))
            if max_pairs is not None and len(pairs) >= max_pairs:
                break
    if not pairs:
        raise ValueError(f"{path}: empty dataset, no `source<TAB>target` line found")
    return pairs


def _pairs_dataset(pairs, name="pairs"):
    """List of (source, target) or a dataset of string pairs -> dataset."""
    if isinstance(pairs, tf.data.Dataset):
        spec = pairs.element_spec
        ok = (
            isinstance(spec, tuple)
            and len(spec) == 2
            and all(isinstance(s, tf.TensorSpec) and s.dtype == tf.string for s in spec)
        )
        if not ok:
            raise ValueError(
                f"Received an invalid value for argument `{name}`, expected a "
                "tf.data.Dataset of (source, target) string pairs. "
                f"Received: element_spec={spec}"
            )
        return pairs
    pairs = list(pairs)
    if not pairs:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected at "
            f"least one (source, target) pair. Received: {name}=[]"
        )
    bad = [p for p in pairs if not (isinstance(p, (tuple, list)) and len(p) == 2)]
    if bad:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            f"(source, target) pairs. Received: {bad[0]!r}"
        )
    sources = [p[0] for p in pairs]
    targets = [p[1] for p in pairs]
    return tf.data.Dataset.from_tensor_slices(
        (tf.constant(sources, tf.string), tf.constant(targets, tf.string))
    )


def make_translation_dataset(
    pairs,
    source_tokenizer,
    target_tokenizer,
    batch_size=64,
    shuffle=False,
    seed=None,
    drop_remainder=False,
):
    """Teacher-forcing batches `((source_ids, target_in_ids), target_out_ids)`.

    The target is tokenized as `[START] tokens [END] [PAD]...` of length
    `L = target_tokenizer.sequence_length`; `target_in_ids` is its first
    `L - 1` ids (starts with `[START]`) and `target_out_ids` the last `L - 1`
    (ends with `[END]` then padding), so position `t` of the decoder input
    predicts position `t` of the output; `[PAD]` = 0 marks positions to mask
    in the loss. Tokenization runs in the pipeline, per batch.

    Args:
        pairs: list of `(source, target)` strings or a `tf.data.Dataset` of
            string pairs (e.g. from `load_ted_hrlr_pt_en`).
        source_tokenizer: `WordPieceTokenizer` or `CharacterTokenizer` for
            the source side.
        target_tokenizer: tokenizer for the target side, with
            `add_start_token=True` and `add_end_token=True`.
        batch_size: batch size.
        shuffle: shuffle the pairs (whole list, reshuffled each epoch).
        seed: shuffle seed.
        drop_remainder: drop the last incomplete batch.

    Returns:
        `tf.data.Dataset` of `((source_ids, target_in_ids), target_out_ids)`
        int32 tensors of shapes `(B, S)`, `(B, L - 1)`, `(B, L - 1)`.

    Raises:
        ValueError: for empty `pairs`, a target tokenizer without start and
            end tokens, or a non-positive `batch_size`.

    Example:

    ```python
    from keras_attention.data import (
        make_translation_dataset, translation_pairs, translation_tokenizers)
    pairs = translation_pairs(32)
    src_tok, tgt_tok = translation_tokenizers(pairs, target_kind="character")
    ds = make_translation_dataset(pairs, src_tok, tgt_tok, batch_size=8)
    (source, target_in), target_out = next(iter(ds))
    ```
    """
    batch_size = validation.check_positive_int(batch_size, "batch_size")
    if not (target_tokenizer.add_start_token and target_tokenizer.add_end_token):
        raise ValueError(
            "Received an invalid value for argument `target_tokenizer`, "
            "expected a tokenizer with add_start_token=True and "
            "add_end_token=True (teacher forcing needs both). Received: "
            f"add_start_token={target_tokenizer.add_start_token}, "
            f"add_end_token={target_tokenizer.add_end_token}"
        )
    dataset = _pairs_dataset(pairs)
    if shuffle:
        size = dataset.cardinality()
        buffer = int(size) if size > 0 else 10_000
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    @tf.autograph.experimental.do_not_convert
    def encode(source, target):
        source_ids = source_tokenizer.tokenize(source)  # (B, S)
        target_ids = target_tokenizer.tokenize(target)  # (B, L)
        return (source_ids, target_ids[:, :-1]), target_ids[:, 1:]

    return dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


def translation_tokenizers(
    pairs,
    source_kind="wordpiece",
    target_kind="wordpiece",
    vocabulary_size=4000,
    source_sequence_length=None,
    target_sequence_length=None,
    lowercase=True,
    strip_accents=False,
):
    """Fit a source and a target tokenizer on translation pairs.

    The target tokenizer adds `[START]` and `[END]` (as
    `make_translation_dataset` needs); the source tokenizer adds none.

    Args:
        pairs: list of `(source, target)` strings or a `tf.data.Dataset` of
            string pairs: the training data.
        source_kind: `"wordpiece"` or `"character"`.
        target_kind: `"wordpiece"` or `"character"`.
        vocabulary_size: maximum vocabulary size of each side.
        source_sequence_length: padded source length; `None` takes the
            longest tokenized source in `pairs`.
        target_sequence_length: padded target length including `[START]`
            and `[END]`; `None` takes the longest tokenized target plus 2.
        lowercase: lower-case both sides.
        strip_accents: strip accents on both sides.

    Returns:
        `(source_tokenizer, target_tokenizer)`.

    Raises:
        ValueError: for empty `pairs` or an unknown tokenizer kind.

    Example:

    ```python
    from keras_attention.data import translation_pairs, translation_tokenizers
    src_tok, tgt_tok = translation_tokenizers(
        translation_pairs(64), target_kind="character")
    (src_tok.sequence_length, tgt_tok.detokenize(tgt_tok(["2005-03-03"])))
    ```
    """
    validation.check_one_of(source_kind, "source_kind", ("wordpiece", "character"))
    validation.check_one_of(target_kind, "target_kind", ("wordpiece", "character"))
    dataset = _pairs_dataset(pairs)
    sources = dataset.map(lambda s, t: s)
    targets = dataset.map(lambda s, t: t)
    source = tokenizers.fit_tokenizer(
        sources,
        kind=source_kind,
        vocabulary_size=vocabulary_size,
        sequence_length=source_sequence_length,
        lowercase=lowercase,
        strip_accents=strip_accents,
    )
    target = tokenizers.fit_tokenizer(
        targets,
        kind=target_kind,
        vocabulary_size=vocabulary_size,
        sequence_length=target_sequence_length,
        lowercase=lowercase,
        strip_accents=strip_accents,
        add_start_token=True,
        add_end_token=True,
    )
    return source, target


@dataclasses.dataclass
class TranslationData:
    """Everything a translation run needs, built by `prepare_translation_data`.

    Args:
        train_pairs: training pairs as given.
        validation_pairs: validation pairs (or `None`).
        test_pairs: test pairs (or `None`).
        source_tokenizer: tokenizer fitted on the training sources.
        target_tokenizer: tokenizer fitted on the training targets
            (`[START]`/`[END]` added).
        train_dataset: shuffled teacher-forcing `tf.data.Dataset`.
        validation_dataset: teacher-forcing `tf.data.Dataset` (or `None`).

    Example:

    ```python
    from keras_attention.data import prepare_translation_data
    pairs = [("one", "un"), ("two", "deux")]
    data = prepare_translation_data(
        pairs, test_pairs=pairs, source_kind="character",
        target_kind="character")
    data.test_pairs[0], data.target_tokenizer.sequence_length
    ```
    """

    train_pairs: object
    validation_pairs: object
    test_pairs: object
    source_tokenizer: object
    target_tokenizer: object
    train_dataset: tf.data.Dataset
    validation_dataset: object


def prepare_translation_data(
    train_pairs,
    validation_pairs=None,
    test_pairs=None,
    batch_size=64,
    source_kind="wordpiece",
    target_kind="wordpiece",
    vocabulary_size=4000,
    source_sequence_length=None,
    target_sequence_length=None,
    lowercase=True,
    strip_accents=False,
    seed=0,
):
    """Fit tokenizers on the training pairs and build the pipelines.

    Works on any pairs: generated (`translation_pairs`), a user's TSV
    (`load_translation_tsv`) or TFDS (`load_ted_hrlr_pt_en`).

    Args:
        train_pairs: list of `(source, target)` or a dataset of string pairs.
        validation_pairs: same, or `None`.
        test_pairs: same, or `None` (kept as given, for BLEU on raw text).
        batch_size: batch size.
        source_kind: `"wordpiece"` or `"character"`.
        target_kind: `"wordpiece"` or `"character"`.
        vocabulary_size: maximum vocabulary size of each side.
        source_sequence_length: padded source length (`None`: longest).
        target_sequence_length: padded target length with `[START]`/`[END]`
            (`None`: longest + 2).
        lowercase: lower-case both sides.
        strip_accents: strip accents on both sides.
        seed: shuffle seed of the training pipeline.

    Returns:
        `TranslationData`.

    Raises:
        ValueError: for empty pairs or invalid arguments.

    Example:

    ```python
    from keras_attention.data import prepare_translation_data
    pairs = [("one", "un"), ("two", "deux"), ("three", "trois")] * 4
    data = prepare_translation_data(pairs, batch_size=4, target_kind="character")
    data.target_tokenizer.sequence_length
    ```
    """
    source_tokenizer, target_tokenizer = translation_tokenizers(
        train_pairs,
        source_kind=source_kind,
        target_kind=target_kind,
        vocabulary_size=vocabulary_size,
        source_sequence_length=source_sequence_length,
        target_sequence_length=target_sequence_length,
        lowercase=lowercase,
        strip_accents=strip_accents,
    )
    train = make_translation_dataset(
        train_pairs, source_tokenizer, target_tokenizer, batch_size,
        shuffle=True, seed=seed,
    )
    valid = None
    if validation_pairs is not None:
        valid = make_translation_dataset(
            validation_pairs, source_tokenizer, target_tokenizer, batch_size
        )
    return TranslationData(
        train_pairs=train_pairs,
        validation_pairs=validation_pairs,
        test_pairs=test_pairs,
        source_tokenizer=source_tokenizer,
        target_tokenizer=target_tokenizer,
        train_dataset=train,
        validation_dataset=valid,
    )


def date_translation_task(
    num_train=20000,
    num_validation=1000,
    num_test=1000,
    batch_size=64,
    reverse=False,
    seed=0,
):
    """The offline default translation task, ready to train.

    Words -> ISO dates (`reverse=False`): WordPiece source, character
    target; ISO -> words: character source, WordPiece target. Validation
    and test dates never occur in training.

    Args:
        num_train: training pairs.
        num_validation: validation pairs.
        num_test: test pairs.
        batch_size: batch size.
        reverse: translate ISO dates into words instead.
        seed: generation and shuffle seed.

    Returns:
        `TranslationData`.

    Raises:
        ValueError: for non-positive sizes.

    Example:

    ```python
    from keras_attention.data import date_translation_task
    data = date_translation_task(num_train=64, num_validation=8, num_test=8)
    (source, target_in), target_out = next(iter(data.train_dataset))
    source.shape, target_in.shape
    ```
    """
    train = translation_pairs(num_train, seed, "train", reverse)
    valid = translation_pairs(num_validation, seed, "validation", reverse)
    test = translation_pairs(num_test, seed, "test", reverse)
    words_kind, iso_kind = "wordpiece", "character"
    return prepare_translation_data(
        train,
        valid,
        test,
        batch_size=batch_size,
        source_kind=iso_kind if reverse else words_kind,
        target_kind=words_kind if reverse else iso_kind,
        vocabulary_size=1000,
        lowercase=True,
        seed=seed,
    )
