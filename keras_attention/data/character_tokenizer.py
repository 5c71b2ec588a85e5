"""Character-level tokenizer that runs inside the model graph, and its
vocabulary builder."""

import collections

import keras
import tensorflow as tf

from keras_attention.data import tokenizers
from keras_attention.utils import validation


@keras.saving.register_keras_serializable(package="keras_attention")
class CharacterTokenizer(tokenizers.StringTokenizer):
    """Character-level tokenizer as a Keras layer (pure TensorFlow ops).

    The fallback with the same interface as `WordPieceTokenizer`: every
    Unicode character (spaces and newlines included) is one token, looked up
    in the vocabulary; unknown characters become `[UNK]`. Only core
    `tf.strings` / `tf.lookup` ops are used, so exported models load with
    plain TensorFlow. `detokenize` concatenates the characters, so text
    round-trips exactly when every character is in the vocabulary.

    Args:
        vocabulary: list of single characters that starts with
            `keras_attention.data.RESERVED_TOKENS` (ids 0-4), e.g. from
            `build_character_vocabulary`.
        sequence_length: length of the padded output.
        lowercase: lower-case the text before splitting.
        strip_accents: remove accents (`"é"` -> `"e"`) before splitting.
        add_start_token: put `[START]` first.
        add_end_token: put `[END]` after the last character.

    Call arguments:
        inputs: string tensor of shape `()`, `(B,)` or `(B, 1)`.

    Returns:
        int32 tensor of shape `(B, sequence_length)` (`(sequence_length,)`
        for a scalar input).

    Raises:
        ValueError: for a vocabulary that does not start with the reserved
            tokens, has duplicates or a multi-character entry after them, a
            non-positive `sequence_length` or one too short for the
            start/end tokens, or non-string inputs.

    Example:

    ```python
    from keras_attention.data import (
        CharacterTokenizer, build_character_vocabulary)
    vocab = build_character_vocabulary(["2005-03-03", "1999-12-31"])
    tokenizer = CharacterTokenizer(vocab, sequence_length=12,
                                   add_start_token=True, add_end_token=True)
    ids = tokenizer(["2024-01-02"])
    tokenizer.detokenize(ids)
    ```

    References:
        Sutskever, Martens & Hinton, "Generating Text with Recurrent Neural
        Networks", ICML 2011 (character-level language modelling).
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
        super().__init__(
            vocabulary=vocabulary,
            sequence_length=sequence_length,
            lowercase=lowercase,
            strip_accents=strip_accents,
            add_start_token=add_start_token,
            add_end_token=add_end_token,
            **kwargs,
        )
        long = [
            t
            for t in self.vocabulary[len(tokenizers.RESERVED_TOKENS) :]
            if len(t) != 1
        ]
        if long:
            raise ValueError(
                "Received an invalid value for argument `vocabulary`, expected "
                "single characters after the reserved tokens. "
                f"Received: {long[:3]!r}"
            )

    def _split_ids(self, texts):
        chars = tf.strings.unicode_split(texts, "UTF-8")  # (B, None)
        ids = self._token_table.lookup(chars.flat_values)
        ids = tf.where(ids >= 0, ids, tokenizers.UNK_ID)
        return chars.with_flat_values(ids)  # (B, None)

    def _render(self, texts):
        return texts

    def _join_tokens(self, tokens):
        return tf.strings.reduce_join(tokens, axis=-1)  # (B,)


def build_character_vocabulary(
    data,
    max_size=None,
    min_frequency=1,
    lowercase=False,
    strip_accents=False,
):
    """Character vocabulary of a corpus, most frequent first.

    Args:
        data: texts: a list of strings, or a `tf.data.Dataset` of strings
            (scalars or batches).
        max_size: maximum vocabulary size, reserved tokens included; `None`
            keeps every character seen at least `min_frequency` times.
        min_frequency: drop characters seen fewer times.
        lowercase: lower-case before counting (use the same value in the
            tokenizer).
        strip_accents: strip accents before counting (same value in the
            tokenizer).

    Returns:
        list of strings: `RESERVED_TOKENS`, then characters by decreasing
        count (ties in code-point order).

    Raises:
        ValueError: if `data` is empty or not strings, no character passes
            `min_frequency`, or `max_size` leaves no room beyond the
            reserved tokens.

    Example:

    ```python
    from keras_attention.data import build_character_vocabulary
    build_character_vocabulary(["abba", "cab"])
    ```
    """
    max_size = validation.check_positive_int(max_size, "max_size", allow_none=True)
    if max_size is not None and max_size <= len(tokenizers.RESERVED_TOKENS):
        raise ValueError(
            "Received an invalid value for argument `max_size`, expected more "
            f"than {len(tokenizers.RESERVED_TOKENS)} (the reserved tokens). "
            f"Received: max_size={max_size}"
        )
    min_frequency = validation.check_positive_int(min_frequency, "min_frequency")
    accent_table = tokenizers._accent_table() if strip_accents else None
    dataset = tokenizers._texts_dataset(data)

    @tokenizers._no_autograph
    def characters_of(texts):
        texts = tokenizers._standardize(texts, lowercase, accent_table)
        return tf.strings.unicode_split(texts, "UTF-8").flat_values

    dataset = dataset.map(characters_of)
    counts = collections.Counter()
    for chars in dataset.as_numpy_iterator():
        counts.update(chars.tolist())
    ranked = sorted(
        (
            (count, c.decode("utf-8"))
            for c, count in counts.items()
            if count >= min_frequency
        ),
        key=lambda item: (-item[0], item[1]),
    )
    if not ranked:
        raise ValueError(
            "Received an invalid value for argument `data`, expected at least "
            f"one character seen {min_frequency} time(s) or more. "
            "Received: no such character"
        )
    vocabulary = list(tokenizers.RESERVED_TOKENS) + [c for _, c in ranked]
    return vocabulary[:max_size] if max_size else vocabulary
