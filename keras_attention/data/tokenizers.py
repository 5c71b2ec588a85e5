"""Shared machinery of the in-graph tokenizers: reserved tokens, text
standardisation and the padding / special-token logic.

Everything here is written with core TensorFlow string ops (`tf.strings`,
`tf.lookup`, `tf.ragged`) and nothing from tensorflow-text, so a SavedModel
that contains one of our tokenizers loads in a process that imports only
TensorFlow -- including the stock TF Serving binary, which does not ship the
tensorflow-text kernels (tensorflow/text#200). tensorflow-text is used only
offline, to *learn* a WordPiece vocabulary.

Every vocabulary starts with the reserved tokens, at fixed ids:

| id | token     | meaning                                          |
|----|-----------|--------------------------------------------------|
| 0  | `[PAD]`   | padding (so `mask_zero=True` embeddings work)     |
| 1  | `[UNK]`   | out-of-vocabulary word or character               |
| 2  | `[START]` | start of sequence (decoder input)                 |
| 3  | `[END]`   | end of sequence                                   |
| 4  | `[MASK]`  | masked-language-model corruption                  |
"""

import functools
import unicodedata

import keras
import numpy as np
import tensorflow as tf

from keras_attention.utils import validation

RESERVED_TOKENS = ("[PAD]", "[UNK]", "[START]", "[END]", "[MASK]")
PAD_ID = 0
UNK_ID = 1
START_ID = 2
END_ID = 3
MASK_ID = 4

# Highest code point whose accent decomposition we tabulate (the BMP and the
# supplementary multilingual plane cover every precomposed Latin, Greek and
# Cyrillic letter).
_MAX_ACCENT_CODE_POINT = 0x20000
_DROP = -2

# The tokenizer code has no Python control flow on tensors (loops are
# explicit `tf.while_loop`s): skipping AutoGraph makes tracing inside
# `tf.data` and `tf.function` several times faster.
_no_autograph = tf.autograph.experimental.do_not_convert


@functools.lru_cache(maxsize=1)
def _accent_map():
    """Code point -> base code point (or `_DROP` for a combining mark)."""
    keys, values = [], []
    for code in range(0x80, _MAX_ACCENT_CODE_POINT):
        char = chr(code)
        if unicodedata.category(char) == "Mn":
            keys.append(code)
            values.append(_DROP)
            continue
        decomposed = unicodedata.normalize("NFD", char)
        if len(decomposed) < 2:
            continue
        base = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
        if len(base) == 1 and base != char:
            keys.append(code)
            values.append(ord(base))
    return np.asarray(keys, np.int32), np.asarray(values, np.int32)


def _accent_table():
    keys, values = _accent_map()
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, tf.int32), tf.constant(values, tf.int32)
        ),
        default_value=-1,
    )


def _standardize(text, lowercase, accent_table):
    """Valid UTF-8, optional lower-casing and accent stripping."""
    text = tf.strings.unicode_transcode(
        text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
    )
    if lowercase:
        text = tf.strings.lower(text, encoding="utf-8")
    if accent_table is not None:
        scalar = text.shape.rank == 0
        if scalar:
            text = text[None]
        codes = tf.strings.unicode_decode(text, "UTF-8")  # ragged (..., chars)
        mapped = accent_table.lookup(codes.flat_values)
        flat = tf.where(mapped == -1, codes.flat_values, mapped)
        codes = codes.with_flat_values(flat)
        codes = tf.ragged.boolean_mask(codes, codes != _DROP)
        text = tf.strings.unicode_encode(codes, "UTF-8")
        if scalar:
            text = text[0]
    return text


def _as_string_batch(inputs):
    """String tensor of rank 0, 1 or (B, 1) -> (rank-1 tensor, was_scalar)."""
    if isinstance(inputs, tf.RaggedTensor):
        raise ValueError(
            "Received an invalid value for argument `inputs`, expected a dense "
            f"string tensor. Received: inputs={inputs!r}"
        )
    inputs = tf.convert_to_tensor(inputs)
    if inputs.dtype != tf.string:
        raise ValueError(
            "Received an invalid value for argument `inputs`, expected a "
            f"string tensor. Received: inputs.dtype={inputs.dtype.name}"
        )
    rank = inputs.shape.rank
    if rank == 0:
        return inputs[None], True
    if rank == 1:
        return inputs, False
    if rank == 2 and inputs.shape[-1] == 1:
        return tf.squeeze(inputs, axis=-1), False
    raise ValueError(
        "Received an invalid value for argument `inputs`, expected a string "
        "tensor of shape (), (B,) or (B, 1). "
        f"Received: inputs.shape={tuple(inputs.shape)}"
    )


def _texts_dataset(data, name="data"):
    """A list/array of strings or a string `tf.data.Dataset` -> batched dataset."""
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.string:
            raise ValueError(
                f"Received an invalid value for argument `{name}`, expected a "
                "tf.data.Dataset of strings (single tensors). "
                f"Received: element_spec={spec}"
            )
        if spec.shape.rank == 0:
            return data.batch(1024)
        return data
    if isinstance(data, str):
        data = [data]
    data = list(data)
    if not all(isinstance(t, (str, bytes)) for t in data):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected "
            "strings. Received: a sequence containing "
            f"{sorted({type(t).__name__ for t in data})}"
        )
    if not data:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected at "
            f"least one text. Received: {name}=[]"
        )
    return tf.data.Dataset.from_tensor_slices(tf.constant(data, tf.string)).batch(
        1024
    )


def check_vocabulary(vocabulary):
    """Validate a vocabulary: strings, no duplicates, reserved tokens first.

    Args:
        vocabulary: list or tuple of token strings.

    Returns:
        The vocabulary as a list of `str`.

    Raises:
        ValueError: if `vocabulary` is not a list of unique strings that
            starts with `RESERVED_TOKENS` or has no token besides them.

    Example:

    ```python
    from keras_attention.data import RESERVED_TOKENS, check_vocabulary
    check_vocabulary(list(RESERVED_TOKENS) + ["a", "b"])
    ```
    """
    if isinstance(vocabulary, np.ndarray):
        vocabulary = vocabulary.tolist()
    if not isinstance(vocabulary, (list, tuple)):
        raise ValueError(
            "Received an invalid value for argument `vocabulary`, expected a "
            "list of strings. Received: "
            f"vocabulary of type {type(vocabulary).__name__}"
        )
    tokens = [t.decode("utf-8") if isinstance(t, bytes) else t for t in vocabulary]
    bad = [t for t in tokens if not isinstance(t, str) or not t]
    if bad:
        raise ValueError(
            "Received an invalid value for argument `vocabulary`, expected "
            f"non-empty strings. Received: {bad[:3]!r}"
        )
    if tuple(tokens[: len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
        raise ValueError(
            "Received an invalid value for argument `vocabulary`, expected it "
            f"to start with the reserved tokens {list(RESERVED_TOKENS)}. "
            f"Received: vocabulary[:{len(RESERVED_TOKENS)}]="
            f"{tokens[: len(RESERVED_TOKENS)]!r}"
        )
    if len(tokens) == len(RESERVED_TOKENS):
        raise ValueError(
            "Received an invalid value for argument `vocabulary`, expected at "
            "least one token besides the reserved tokens. "
            f"Received: vocabulary={tokens!r}"
        )
    seen = set()
    duplicates = []
    for token in tokens:
        if token in seen:
            duplicates.append(token)
        seen.add(token)
    if duplicates:
        raise ValueError(
            "Received an invalid value for argument `vocabulary`, expected "
            f"unique tokens. Received duplicates: {duplicates[:5]!r}"
        )
    return tokens


class StringTokenizer(keras.layers.Layer):
    """Base class of the in-graph tokenizers (not used directly).

    Subclasses implement `_split_ids` (standardised string batch -> ragged
    token ids), `_join_tokens` (ragged token strings -> text) and `_render`
    (standardised text -> the surface form `_join_tokens` gives). This class
    owns the vocabulary tables, the reserved tokens, truncation and padding,
    detokenization and the Keras plumbing (config, shapes, serialization).

    Args:
        vocabulary: list of token strings starting with `RESERVED_TOKENS`.
        sequence_length: length of the padded output of `tokenize`.
        lowercase: lower-case the text (Unicode aware) before splitting.
        strip_accents: map accented letters to their base letter (NFD
            decomposition without the combining marks) before splitting.
        add_start_token: put `[START]` before the tokens.
        add_end_token: put `[END]` after the tokens.
    """

    def __init__(
        self,
        vocabulary,
        sequence_length,
        lowercase=False,
        strip_accents=False,
        add_start_token=False,
        add_end_token=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary = check_vocabulary(vocabulary)
        self.sequence_length = validation.check_positive_int(
            sequence_length, "sequence_length"
        )
        self.lowercase = validation.check_bool(lowercase, "lowercase")
        self.strip_accents = validation.check_bool(strip_accents, "strip_accents")
        self.add_start_token = validation.check_bool(
            add_start_token, "add_start_token"
        )
        self.add_end_token = validation.check_bool(add_end_token, "add_end_token")
        num_special = int(add_start_token) + int(add_end_token)
        if self.sequence_length <= num_special:
            raise ValueError(
                "Received an invalid value for argument `sequence_length`, "
                f"expected more than the {num_special} start/end token(s) it "
                f"must hold. Received: sequence_length={sequence_length}"
            )
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self._token_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.vocabulary, tf.string),
                tf.range(len(self.vocabulary), dtype=tf.int32),
            ),
            default_value=-1,
        )
        self._vocabulary_tensor = tf.constant(self.vocabulary, tf.string)
        self._accent_lookup = _accent_table() if strip_accents else None
        self.built = True

    # ------------------------------------------------------------------ API
    @property
    def vocabulary_size(self):
        """Number of tokens, reserved tokens included."""
        return len(self.vocabulary)

    @property
    def pad_token_id(self):
        return PAD_ID

    @property
    def unk_token_id(self):
        return UNK_ID

    @property
    def start_token_id(self):
        return START_ID

    @property
    def end_token_id(self):
        return END_ID

    @property
    def mask_token_id(self):
        return MASK_ID

    def get_vocabulary(self):
        """The vocabulary as a list of strings (id = position)."""
        return list(self.vocabulary)

    def token_to_id(self, token):
        """Id of `token` (a Python string); `[UNK]`'s id if unknown."""
        try:
            return self.vocabulary.index(token)
        except ValueError:
            return UNK_ID

    def id_to_token(self, token_id):
        """Token string of `token_id` (a Python int)."""
        if not 0 <= int(token_id) < len(self.vocabulary):
            raise ValueError(
                "Received an invalid value for argument `token_id`, expected "
                f"an integer in [0, {len(self.vocabulary)}). "
                f"Received: token_id={token_id}"
            )
        return self.vocabulary[int(token_id)]

    @_no_autograph
    def standardize(self, inputs):
        """Apply the configured lower-casing and accent stripping."""
        return _standardize(
            tf.convert_to_tensor(inputs, tf.string),
            self.lowercase,
            self._accent_lookup,
        )

    @_no_autograph
    def normalize(self, inputs):
        """Text as `detokenize` renders it when every token is known.

        Standardised (lower-casing / accent stripping as configured) and,
        for word-level tokenizers, words joined by single spaces. Apply it
        to reference translations before BLEU so that references and
        detokenized predictions share one surface form.

        Args:
            inputs: string tensor of shape `()` or `(B,)`.

        Returns:
            string tensor of the same shape.
        """
        texts, scalar = _as_string_batch(inputs)
        text = self._render(self.standardize(texts))  # (B,)
        return text[0] if scalar else text

    @_no_autograph
    def tokenize_ragged(self, inputs):
        """Token ids of each text, no special tokens, no truncation.

        Args:
            inputs: string tensor of shape `(B,)` (or a scalar).

        Returns:
            int32 `tf.RaggedTensor` of shape `(B, None)` (or a 1-D tensor for
            a scalar input).
        """
        texts, scalar = _as_string_batch(inputs)
        ids = self._split_ids(self.standardize(texts))  # (B, None)
        return ids[0] if scalar else ids

    @_no_autograph
    def tokenize(self, inputs):
        """Padded token ids: `[START]? tokens [END]? [PAD]...`.

        Texts longer than `sequence_length` are truncated (the start and end
        tokens, when enabled, are always kept); an empty text gives only the
        special tokens.

        Args:
            inputs: string tensor of shape `()`, `(B,)` or `(B, 1)`.

        Returns:
            int32 tensor of shape `(sequence_length,)` or
            `(B, sequence_length)`.
        """
        texts, scalar = _as_string_batch(inputs)
        ids = self._split_ids(self.standardize(texts))  # (B, None)
        start = int(self.add_start_token)
        budget = self.sequence_length - start - int(self.add_end_token)
        dense = ids.to_tensor(default_value=PAD_ID, shape=[None, budget])  # (B, n)
        if start:
            dense = tf.pad(dense, [[0, 0], [1, 0]], constant_values=START_ID)
        if self.add_end_token:
            dense = tf.pad(dense, [[0, 0], [0, 1]], constant_values=PAD_ID)
            # (B, sequence_length)
            end_at = tf.minimum(tf.cast(ids.row_lengths(), tf.int32), budget) + start
            columns = tf.range(self.sequence_length, dtype=tf.int32)
            dense = tf.where(columns[None, :] == end_at[:, None], END_ID, dense)
        return dense[0] if scalar else dense

    @_no_autograph
    def detokenize(self, ids):
        """Token ids back to text.

        `[PAD]` and `[START]` are dropped, the text stops at the first
        `[END]`, out-of-range ids read as `[UNK]`; `[UNK]` and `[MASK]` are
        rendered as their token strings.

        Args:
            ids: integer tensor (dense or ragged) of shape `(B, T)` or `(T,)`.

        Returns:
            string tensor of shape `(B,)` (or a scalar for 1-D `ids`).
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise ValueError(
                "Received an invalid value for argument `ids`, expected an "
                f"integer tensor. Received: ids.dtype={ids.dtype.name}"
            )
        scalar = ids.shape.rank == 1
        if scalar:
            ids = ids[None]
        if ids.shape.rank != 2:
            raise ValueError(
                "Received an invalid value for argument `ids`, expected a "
                "tensor of rank 1 or 2. "
                f"Received: ids.shape={tuple(ids.shape)}"
            )
        if isinstance(ids, tf.RaggedTensor):
            ids = ids.to_tensor(default_value=PAD_ID)
        ids = tf.cast(ids, tf.int32)  # (B, T)
        ids = tf.where((ids >= 0) & (ids < self.vocabulary_size), ids, UNK_ID)
        ended = tf.cumsum(tf.cast(ids == END_ID, tf.int32), axis=1) > 0
        keep = ~ended & (ids != PAD_ID) & (ids != START_ID)  # (B, T)
        ids = tf.ragged.boolean_mask(ids, keep)  # (B, None)
        tokens = tf.gather(self._vocabulary_tensor, ids)
        text = self._join_tokens(tokens)  # (B,)
        return text[0] if scalar else text

    # -------------------------------------------------------------- Keras
    @_no_autograph
    def call(self, inputs):
        return self.tokenize(inputs)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) == 0:
            return (self.sequence_length,)
        return (input_shape[0], self.sequence_length)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(
            self.compute_output_shape(inputs.shape), dtype="int32"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": list(self.vocabulary),
                "sequence_length": self.sequence_length,
                "lowercase": self.lowercase,
                "strip_accents": self.strip_accents,
                "add_start_token": self.add_start_token,
                "add_end_token": self.add_end_token,
            }
        )
        return config

    # ---------------------------------------------------------- subclasses
    def _split_ids(self, texts):
        raise NotImplementedError

    def _join_tokens(self, tokens):
        raise NotImplementedError

    def _render(self, texts):
        raise NotImplementedError


def fit_tokenizer(
    texts,
    kind="wordpiece",
    vocabulary_size=4000,
    sequence_length=None,
    lowercase=True,
    strip_accents=False,
    add_start_token=False,
    add_end_token=False,
):
    """Build a vocabulary on `texts` and return a tokenizer using it.

    Args:
        texts: a list of strings or a `tf.data.Dataset` of strings.
        kind: `"wordpiece"` (`WordPieceTokenizer`) or `"character"`
            (`CharacterTokenizer`).
        vocabulary_size: maximum vocabulary size, reserved tokens included.
        sequence_length: padded length of the tokenizer output; `None` takes
            the longest tokenized text of `texts` plus the start/end tokens.
        lowercase: lower-case the text (vocabulary and tokenizer).
        strip_accents: strip accents (vocabulary and tokenizer).
        add_start_token: the tokenizer puts `[START]` first.
        add_end_token: the tokenizer puts `[END]` last.

    Returns:
        a `WordPieceTokenizer` or `CharacterTokenizer`.

    Raises:
        ValueError: for empty `texts`, an unknown `kind` or invalid sizes.

    Example:

    ```python
    from keras_attention.data import fit_tokenizer
    tokenizer = fit_tokenizer(["a rose is a rose"] * 5, kind="character")
    tokenizer.sequence_length, tokenizer.vocabulary_size
    ```
    """
    from keras_attention.data import character_tokenizer
    from keras_attention.data import wordpiece_tokenizer

    validation.check_one_of(kind, "kind", ("wordpiece", "character"))
    if kind == "wordpiece":
        vocabulary = wordpiece_tokenizer.build_wordpiece_vocabulary(
            texts, vocabulary_size, lowercase=lowercase, strip_accents=strip_accents
        )
        cls = wordpiece_tokenizer.WordPieceTokenizer
    else:
        vocabulary = character_tokenizer.build_character_vocabulary(
            texts,
            max_size=vocabulary_size,
            lowercase=lowercase,
            strip_accents=strip_accents,
        )
        cls = character_tokenizer.CharacterTokenizer
    if sequence_length is None:
        probe = cls(
            vocabulary,
            sequence_length=1,
            lowercase=lowercase,
            strip_accents=strip_accents,
        )
        longest = 0
        for batch in _texts_dataset(texts, "texts"):
            lengths = probe.tokenize_ragged(batch).row_lengths()  # (B,)
            longest = max(longest, int(tf.reduce_max(tf.concat([lengths, [0]], 0))))
        sequence_length = max(longest, 1) + int(add_start_token) + int(add_end_token)
    return cls(
        vocabulary,
        sequence_length=sequence_length,
        lowercase=lowercase,
        strip_accents=strip_accents,
        add_start_token=add_start_token,
        add_end_token=add_end_token,
    )
