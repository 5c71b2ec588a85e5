"""WordPiece tokenizer that runs inside the model graph, and its vocabulary
builder."""

import collections

import keras
import tensorflow as tf

from keras_attention.data import tokenizers
from keras_attention.utils import validation

SUFFIX_INDICATOR = "##"
# Words longer than this many characters become `[UNK]` (as in BERT).
MAX_CHARS_PER_WORD = 100

# Punctuation, symbols and CJK ideographs are words of their own.
_ISOLATE = r"([\p{P}\p{S}\p{Han}])"


def split_words(texts):
    """Split standardised texts into words (pure TensorFlow).

    Whitespace (ASCII and Unicode separators) separates words; each
    punctuation mark, symbol and CJK ideograph is a word of its own; control
    and format characters are removed.

    Args:
        texts: string tensor of shape `(B,)`.

    Returns:
        string `tf.RaggedTensor` of shape `(B, None)`.

    Example:

    ```python
    from keras_attention.data import split_words
    split_words(["Hello, world!"]).to_list()
    ```
    """
    texts = tf.convert_to_tensor(texts, tf.string)
    texts = tf.strings.regex_replace(texts, r"\p{Cf}", "")
    texts = tf.strings.regex_replace(texts, r"[\p{Cc}\p{Z}]", " ")
    texts = tf.strings.regex_replace(texts, _ISOLATE, r" \1 ")
    return tf.strings.split(texts)  # (B, None)


def _wordpiece_loop(words, table, max_piece_chars):
    """Greedy longest-match-first WordPiece of a flat batch of words.

    Vectorised over the N words: each loop step finds, for every unfinished
    word, the longest vocabulary piece starting at its current position
    (`##`-prefixed after the first piece). A word with no match at some
    position, or longer than `MAX_CHARS_PER_WORD`, becomes `[UNK]`.

    Args:
        words: string tensor `(N,)`.
        table: `tf.lookup.StaticHashTable` token -> id (-1 when absent).
        max_piece_chars: longest piece in the vocabulary, in characters.

    Returns:
        int32 tensor `(N, 1 + steps)`: each row holds the word's ids in
        order, `-1` elsewhere.
    """
    num_words = tf.shape(words)[0]
    word_chars = tf.strings.length(words, unit="UTF8_CHAR")  # (N,)
    lengths = tf.range(1, max_piece_chars + 1, dtype=tf.int32)  # (P,)
    grid_lengths = tf.broadcast_to(lengths[None, :], [num_words, max_piece_chars])

    def body(pos, failed, emitted):
        starts = tf.broadcast_to(pos[:, None], [num_words, max_piece_chars])
        pieces = tf.strings.substr(
            words[:, None], starts, grid_lengths, unit="UTF8_CHAR"
        )  # (N, P)
        pieces = tf.where(starts > 0, SUFFIX_INDICATOR + pieces, pieces)
        ids = table.lookup(pieces)  # (N, P)
        fits = starts + grid_lengths <= word_chars[:, None]
        found = (ids >= 0) & fits  # (N, P)
        best = tf.reduce_max(tf.where(found, grid_lengths, 0), axis=1)  # (N,)
        active = (pos < word_chars) & ~failed
        step_ok = active & (best > 0)
        best_id = tf.gather(ids, tf.maximum(best - 1, 0), batch_dims=1)  # (N,)
        emit = tf.where(step_ok, best_id, -1)
        emitted = tf.concat([emitted, emit[:, None]], axis=1)  # (N, steps)
        return pos + tf.where(step_ok, best, 0), failed | (active & ~step_ok), emitted

    def cond(pos, failed, emitted):
        return tf.reduce_any((pos < word_chars) & ~failed)

    pos0 = tf.zeros([num_words], tf.int32)
    failed0 = word_chars > MAX_CHARS_PER_WORD
    emitted0 = tf.zeros([num_words, 0], tf.int32)
    _, failed, emitted = tf.while_loop(
        cond,
        body,
        (pos0, failed0, emitted0),
        shape_invariants=(
            pos0.shape,
            failed0.shape,
            tf.TensorShape([None, None]),
        ),
    )
    emitted = tf.where(failed[:, None], -1, emitted)
    unk = tf.where(failed, tokenizers.UNK_ID, -1)
    return tf.concat([unk[:, None], emitted], axis=1)  # (N, 1 + steps)


def _wordpiece_ids(words, table, max_piece_chars):
    """WordPiece ids of a flat batch of words, as a ragged `(N, None)`.

    Whole words found in the vocabulary (the common case) take one lookup;
    only the others go through the greedy loop.
    """
    num_words = tf.shape(words)[0]
    whole = table.lookup(words)  # (N,)
    whole = tf.where(
        tf.strings.length(words, unit="UTF8_CHAR") <= MAX_CHARS_PER_WORD, whole, -1
    )
    rest = tf.cast(tf.where(whole < 0), tf.int32)  # (R, 1)
    pieces = _wordpiece_loop(
        tf.gather_nd(words, rest), table, max_piece_chars
    )  # (R, 1 + steps)
    width = tf.shape(pieces)[1]
    scattered = tf.scatter_nd(
        rest, pieces + 1, tf.stack([num_words, width])
    ) - 1  # (N, 1 + steps)
    first = tf.where(whole >= 0, whole, scattered[:, 0])  # (N,)
    emitted = tf.concat([first[:, None], scattered[:, 1:]], axis=1)
    return tf.ragged.boolean_mask(emitted, emitted >= 0)  # (N, None)


@keras.saving.register_keras_serializable(package="keras_attention")
class WordPieceTokenizer(tokenizers.StringTokenizer):
    """WordPiece tokenizer as a Keras layer that runs in the model graph.

    Text is standardised (optional Unicode lower-casing and accent
    stripping), split into words on whitespace with punctuation, symbols and
    CJK ideographs as words of their own (`split_words`), and each word is
    cut into the longest vocabulary pieces from the left, continuation
    pieces carrying the `##` prefix. A word that cannot be covered becomes
    `[UNK]`.

    The lookup is written with core TensorFlow ops only (`tf.strings`,
    `tf.lookup`, a `tf.while_loop`), not tensorflow-text, so a model that
    contains this layer exports to a SavedModel taking raw strings that
    loads with plain TensorFlow and the stock TF Serving binary: no
    `import tensorflow_text` is needed at serving time (tensorflow/text#200).
    It gives the same ids as `tensorflow_text.WordpieceTokenizer` on the
    same words. The vocabulary is part of `get_config()`, so `.keras` files
    load with `safe_mode=True`. String ops do not compile with XLA: use the
    layer in a `tf.data` pipeline for training and in the serving model, not
    inside a `jit_compile=True` training step.

    Calling the layer is `tokenize`: a batch of strings to `(B,
    sequence_length)` int32 ids, `[START]`/`[END]` optional, truncated,
    padded with `[PAD]` = 0. `detokenize` maps ids back to text, gluing
    `##` pieces to their word and joining words with single spaces.

    Args:
        vocabulary: list of token strings that starts with
            `keras_attention.data.RESERVED_TOKENS` (`[PAD]`, `[UNK]`,
            `[START]`, `[END]`, `[MASK]` at ids 0-4), e.g. from
            `build_wordpiece_vocabulary`.
        sequence_length: length of the padded output.
        lowercase: lower-case the text before splitting. Use the value the
            vocabulary was built with.
        strip_accents: remove accents (`"é"` -> `"e"`) before splitting.
            Use the value the vocabulary was built with.
        add_start_token: put `[START]` first.
        add_end_token: put `[END]` after the last token.

    Call arguments:
        inputs: string tensor of shape `()`, `(B,)` or `(B, 1)`.

    Returns:
        int32 tensor of shape `(B, sequence_length)` (`(sequence_length,)`
        for a scalar input).

    Raises:
        ValueError: for a vocabulary that does not start with the reserved
            tokens or has duplicates, a non-positive `sequence_length` or one
            too short for the start/end tokens, or non-string inputs.

    Example:

    ```python
    from keras_attention.data import (
        WordPieceTokenizer, build_wordpiece_vocabulary)
    vocab = build_wordpiece_vocabulary(
        ["the cat sat", "the cats sat on the mat"] * 20, vocabulary_size=40)
    tokenizer = WordPieceTokenizer(vocab, sequence_length=8,
                                   lowercase=True, add_end_token=True)
    ids = tokenizer(["The cats sat."])
    tokenizer.detokenize(ids)
    ```

    References:
        Schuster & Nakajima, "Japanese and Korean Voice Search", ICASSP 2012.
        Wu et al., "Google's Neural Machine Translation System: Bridging the
        Gap between Human and Machine Translation", arXiv:1609.08144, 2016.
    """

    def __init__(
        self,
        vocabulary,
        sequence_length,
        lowercase=True,
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
        pieces = [
            t[len(SUFFIX_INDICATOR) :] if t.startswith(SUFFIX_INDICATOR) else t
            for t in self.vocabulary[len(tokenizers.RESERVED_TOKENS) :]
        ]
        self._max_piece_chars = max(1, max(len(p) for p in pieces))

    def _split_ids(self, texts):
        words = split_words(texts)  # (B, W)
        ids = _wordpiece_ids(
            words.flat_values, self._token_table, self._max_piece_chars
        )  # (N words, None)
        return tf.RaggedTensor.from_row_splits(
            ids.values, tf.gather(ids.row_splits, words.row_splits)
        )  # (B, None)

    def _render(self, texts):
        return tf.strings.reduce_join(split_words(texts), axis=-1, separator=" ")

    def _join_tokens(self, tokens):
        text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")  # (B,)
        text = tf.strings.regex_replace(text, " " + SUFFIX_INDICATOR, "")
        return tf.strings.regex_replace(text, "^" + SUFFIX_INDICATOR, "")


def build_wordpiece_vocabulary(
    data,
    vocabulary_size,
    lowercase=True,
    strip_accents=False,
    min_frequency=5,
    max_token_length=50,
):
    """Learn a WordPiece vocabulary from a text corpus.

    Words are split exactly as `WordPieceTokenizer` splits them (same
    standardisation, same `split_words`), counted, and the vocabulary is
    learned with tensorflow-text's WordPiece learner
    (`tensorflow_text.tools.wordpiece_vocab.wordpiece_tokenizer_learner_lib`,
    the algorithm behind `bert_vocab_from_dataset`). Learning runs in Python
    and needs tensorflow-text; using the vocabulary does not.

    Args:
        data: texts: a list of strings, or a `tf.data.Dataset` of strings
            (scalars or batches).
        vocabulary_size: maximum size, reserved tokens included. The learner
            aims within 5% below it; the least frequent pieces beyond it are
            dropped.
        lowercase: lower-case before counting (use the same value in the
            tokenizer).
        strip_accents: strip accents before counting (same value in the
            tokenizer).
        min_frequency: lowest word-piece count the learner may use as its
            threshold; smaller values give more multi-character pieces on
            small corpora but learn more slowly.
        max_token_length: longest word the learner considers, in characters.

    Returns:
        list of strings: `RESERVED_TOKENS`, then the single characters and
        `##` characters, then learned pieces by decreasing count.

    Raises:
        ValueError: if `data` is empty or not strings, or `vocabulary_size`
            is not larger than the number of reserved tokens.

    Example:

    ```python
    from keras_attention.data import build_wordpiece_vocabulary
    vocab = build_wordpiece_vocabulary(["low lower lowest"] * 10, 30)
    vocab[:7]
    ```
    """
    vocabulary_size = validation.check_positive_int(vocabulary_size, "vocabulary_size")
    if vocabulary_size <= len(tokenizers.RESERVED_TOKENS):
        raise ValueError(
            "Received an invalid value for argument `vocabulary_size`, "
            f"expected more than {len(tokenizers.RESERVED_TOKENS)} (the "
            f"reserved tokens). Received: vocabulary_size={vocabulary_size}"
        )
    min_frequency = validation.check_positive_int(min_frequency, "min_frequency")
    max_token_length = validation.check_positive_int(
        max_token_length, "max_token_length"
    )
    from tensorflow_text.tools.wordpiece_vocab import (
        wordpiece_tokenizer_learner_lib as learner,
    )

    accent_table = tokenizers._accent_table() if strip_accents else None
    dataset = tokenizers._texts_dataset(data)

    @tokenizers._no_autograph
    def words_of(texts):
        return split_words(
            tokenizers._standardize(texts, lowercase, accent_table)
        ).flat_values

    dataset = dataset.map(words_of)
    counts = collections.Counter()
    for words in dataset.as_numpy_iterator():
        counts.update(words.tolist())
    counts = {word.decode("utf-8"): count for word, count in counts.items()}
    if not counts:
        raise ValueError(
            "Received an invalid value for argument `data`, expected texts "
            "with at least one word. Received: only empty texts"
        )
    word_counts = sorted(counts.items())
    reserved = list(tokenizers.RESERVED_TOKENS)
    params = learner.Params(
        upper_thresh=int(1e7),
        lower_thresh=min_frequency,
        num_iterations=4,
        max_input_tokens=int(5e6),
        max_token_length=max_token_length,
        max_unique_chars=1000,
        vocab_size=vocabulary_size,
        slack_ratio=0.05,
        include_joiner_token=True,
        joiner=SUFFIX_INDICATOR,
        reserved_tokens=reserved,
    )
    # The same steps as `learner.learn`, with one shortcut: when the lowest
    # threshold already fits, its vocabulary is the largest that fits and
    # the threshold binary search (a full learning pass per step) is skipped.
    upper, lower = learner.get_search_threshs(
        word_counts, params.upper_thresh, params.lower_thresh
    )
    words = learner.get_input_words(word_counts, reserved, max_token_length)
    allowed = learner.get_allowed_chars(words, params.max_unique_chars)
    words = learner.filter_input_words(words, allowed, params.max_input_tokens)
    vocabulary = learner.learn_with_thresh(words, lower, params)
    if len(vocabulary) > vocabulary_size:
        vocabulary = learner.learn_binary_search(words, lower, upper, params)
    return _fit_to_size(list(vocabulary), vocabulary_size, words)


def _fit_to_size(vocabulary, vocabulary_size, word_counts):
    """At most `vocabulary_size` tokens, the pieces words need most first.

    The learner may overshoot by a few tokens, and it lists the `##`
    characters it did not learn as multi-character pieces last, in
    code-point order; cutting its list by position would drop `##a`-like
    continuations (so words become `[UNK]`) and keep `##!`-like ones, never
    used (punctuation is split off as words of its own). Kept, in this
    priority: the reserved tokens and the single characters; the `##`
    characters that continue words, most frequent first; the other pieces
    in the learner's order (by decreasing count). The learner's order is
    kept in the result.
    """
    if len(vocabulary) <= vocabulary_size:
        return vocabulary
    continuing = collections.Counter()
    for word, count in word_counts:
        for char in word[1:]:
            continuing[char] += count
    reserved = set(tokenizers.RESERVED_TOKENS)
    prefix = len(SUFFIX_INDICATOR)

    def is_continuation(token):
        return token.startswith(SUFFIX_INDICATOR) and len(token) == prefix + 1

    first = [t for t in vocabulary if t in reserved or len(t) == 1]
    continuations = sorted(
        (t for t in vocabulary if is_continuation(t) and continuing[t[prefix:]]),
        key=lambda t: -continuing[t[prefix:]],
    )
    chosen = set(first + continuations)
    rest = [t for t in vocabulary if t not in chosen and not is_continuation(t)]
    keep = set((first + continuations + rest)[:vocabulary_size])
    return [t for t in vocabulary if t in keep]
