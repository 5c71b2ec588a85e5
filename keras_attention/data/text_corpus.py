"""A real text corpus every Python install has: the standard library's
docstrings, labelled by module family -- plus the `tf.data` builders for
classification, language modelling and masked language modelling.

The families follow the chapters of the Python Library Reference, merged
into eight groups (`STDLIB_FAMILIES`). A docstring is one example: the
docstring of a module, or of a public class, function, method or property
defined in it (or in its C accelerator, e.g. `_socket` for `socket`).
Docstrings shorter than `min_words` words are dropped, exact duplicates are
kept once (first in family order), and each example goes to train (80%),
validation (10%) or test (10%) by a fixed hash of its qualified name. The
order is fixed, so the corpus is identical on every run of one Python
version (docstrings change between Python versions); modules that a Python
build lacks (e.g. `ssl`, `lzma`) are skipped.
"""

import dataclasses
import functools
import hashlib
import importlib
import inspect
import warnings

import numpy as np
import tensorflow as tf

from keras_attention.data import tokenizers
from keras_attention.utils import validation

STDLIB_FAMILIES = {
    "text": (
        "string", "re", "difflib", "textwrap", "unicodedata", "stringprep",
        "codecs", "locale", "gettext", "shlex", "html",
    ),
    "datatypes": (
        "datetime", "calendar", "zoneinfo", "collections", "collections.abc",
        "heapq", "bisect", "array", "weakref", "types", "copy", "pprint",
        "reprlib", "enum", "graphlib", "itertools", "functools", "operator",
    ),
    "numeric": (
        "numbers", "math", "cmath", "decimal", "fractions", "random",
        "statistics", "hashlib", "hmac", "secrets",
    ),
    "files": (
        "os", "os.path", "pathlib", "stat", "filecmp", "tempfile", "glob",
        "fnmatch", "linecache", "shutil", "io", "fileinput", "mmap",
    ),
    "formats": (
        "pickle", "copyreg", "shelve", "marshal", "dbm", "sqlite3", "zlib",
        "gzip", "bz2", "lzma", "zipfile", "tarfile", "csv", "configparser",
        "tomllib", "netrc", "plistlib", "json", "base64", "binascii",
        "quopri", "struct", "xml.etree.ElementTree", "xml.dom.minidom",
        "html.parser",
    ),
    "internet": (
        "socket", "ssl", "select", "selectors", "http.client", "http.server",
        "http.cookies", "http.cookiejar", "urllib.request", "urllib.parse",
        "urllib.robotparser", "ftplib", "poplib", "imaplib", "smtplib",
        "email.message", "email.utils", "mimetypes", "ipaddress",
        "socketserver", "webbrowser", "wsgiref.simple_server",
        "xmlrpc.client",
    ),
    "concurrency": (
        "threading", "multiprocessing", "concurrent.futures", "subprocess",
        "sched", "queue", "contextvars", "_thread", "asyncio", "signal",
    ),
    "development": (
        "typing", "pydoc", "doctest", "unittest", "bdb", "faulthandler",
        "pdb", "timeit", "trace", "tracemalloc", "cProfile", "pstats",
        "logging", "argparse", "warnings", "traceback", "inspect", "dis",
        "ast", "code", "contextlib", "abc", "dataclasses",
    ),
}
SPLITS = ("train", "validation", "test")
# Extra `__module__` names whose members count as the module's own.
_MODULE_ALIASES = {"os": ("posix", "nt")}


@dataclasses.dataclass(frozen=True)
class Docstring:
    """One example of the standard-library docstring corpus.

    Args:
        text: the cleaned docstring (`inspect.cleandoc`).
        label: index of `family` in `STDLIB_FAMILIES`.
        family: family name, e.g. `"numeric"`.
        source: qualified name, e.g. `"math.sqrt"`.
        split: `"train"`, `"validation"` or `"test"`.

    Example:

    ```python
    from keras_attention.data import stdlib_docstrings
    stdlib_docstrings()[0].family
    ```
    """

    text: str
    label: int
    family: str
    source: str
    split: str


def _split_of(source):
    bucket = int(hashlib.md5(source.encode("utf-8")).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


def _owns(module_names, obj):
    owner = getattr(obj, "__module__", None)
    if not isinstance(owner, str):
        return False
    return any(owner == m or owner.startswith(m + ".") for m in module_names)


def _doc(obj):
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _module_docstrings(module_name):
    """(qualified name, docstring) of a module and its public members."""
    module = importlib.import_module(module_name)
    name = module.__name__
    owners = (name, "_" + name) + _MODULE_ALIASES.get(module_name, ())
    found = [(module_name, _doc(module))]
    members = vars(module)
    for attr in sorted(members):
        obj = members[attr]
        if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if not _owns(owners, obj):
            continue
        found.append((f"{module_name}.{attr}", _doc(obj)))
        if inspect.isclass(obj):
            for method_name in sorted(vars(obj)):
                method = vars(obj)[method_name]
                if method_name.startswith("_"):
                    continue
                if isinstance(method, (staticmethod, classmethod)):
                    method = method.__func__
                if inspect.isroutine(method) or isinstance(method, property):
                    found.append((f"{module_name}.{attr}.{method_name}", _doc(method)))
    return found


@functools.lru_cache(maxsize=4)
def _corpus(min_words):
    examples = []
    seen = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, (family, modules) in enumerate(STDLIB_FAMILIES.items()):
            for module_name in modules:
                try:
                    docs = _module_docstrings(module_name)
                except ImportError:
                    continue
                for source, text in docs:
                    if len(text.split()) < min_words or text in seen:
                        continue
                    seen.add(text)
                    examples.append(
                        Docstring(text, label, family, source, _split_of(source))
                    )
    return tuple(examples)


def stdlib_docstrings(min_words=8):
    """The standard-library docstring corpus, in its fixed order.

    Args:
        min_words: drop docstrings with fewer whitespace-separated words.

    Returns:
        list of `Docstring` (text, label, family, source, split), ordered by
        family, module, then member name.

    Raises:
        ValueError: for a non-positive `min_words`.

    Example:

    ```python
    from keras_attention.data import stdlib_docstrings
    corpus = stdlib_docstrings()
    corpus[0].source, corpus[0].text[:40]
    ```
    """
    min_words = validation.check_positive_int(min_words, "min_words")
    return list(_corpus(min_words))


def docstring_classification_data(split="train", min_words=8):
    """Texts and family labels of one split of the docstring corpus.

    Args:
        split: `"train"`, `"validation"` or `"test"`.
        min_words: drop docstrings with fewer words.

    Returns:
        `(texts, labels, label_names)`: list of str, int32 array, list of
        family names (`labels` index into it).

    Raises:
        ValueError: for an unknown `split`.

    Example:

    ```python
    from keras_attention.data import class_counts, docstring_classification_data
    texts, labels, names = docstring_classification_data("validation")
    class_counts(labels, names)
    ```
    """
    validation.check_one_of(split, "split", SPLITS)
    chosen = [d for d in stdlib_docstrings(min_words) if d.split == split]
    texts = [d.text for d in chosen]
    labels = np.asarray([d.label for d in chosen], np.int32)
    return texts, labels, list(STDLIB_FAMILIES)


def docstring_text(split="train", min_words=8):
    """The docstrings of one split as one text, for language modelling.

    Args:
        split: `"train"`, `"validation"` or `"test"`.
        min_words: drop docstrings with fewer words.

    Returns:
        str: the docstrings in corpus order, separated by blank lines.

    Raises:
        ValueError: for an unknown `split`.

    Example:

    ```python
    from keras_attention.data import docstring_text
    len(docstring_text("test"))
    ```
    """
    validation.check_one_of(split, "split", SPLITS)
    return "\n\n".join(d.text for d in stdlib_docstrings(min_words) if d.split == split)


def class_counts(labels, label_names):
    """Number of examples per class.

    Args:
        labels: integer labels.
        label_names: class names, indexed by label.

    Returns:
        dict class name -> count, in `label_names` order (zero counts kept).

    Raises:
        ValueError: if a label is outside `[0, len(label_names))`.

    Example:

    ```python
    from keras_attention.data import class_counts
    class_counts([0, 1, 1], ["neg", "pos"])
    ```
    """
    labels = np.asarray(labels, np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= len(label_names)):
        raise ValueError(
            "Received an invalid value for argument `labels`, expected "
            f"integers in [0, {len(label_names)}). Received: "
            f"min={labels.min()}, max={labels.max()}"
        )
    counts = np.bincount(labels, minlength=len(label_names))
    return {name: int(c) for name, c in zip(label_names, counts)}


def _check_tokenizer(tokenizer):
    if not isinstance(tokenizer, tokenizers.StringTokenizer):
        raise ValueError(
            "Received an invalid value for argument `tokenizer`, expected a "
            "WordPieceTokenizer or CharacterTokenizer. "
            f"Received: tokenizer={tokenizer!r}"
        )


def make_classification_dataset(
    texts, labels, tokenizer, batch_size=32, shuffle=False, seed=None
):
    """Batches of `(token_ids, label)` for text classification.

    Args:
        texts: list of strings.
        labels: integer labels, one per text.
        tokenizer: `WordPieceTokenizer` or `CharacterTokenizer`.
        batch_size: batch size.
        shuffle: shuffle the examples (reshuffled each epoch).
        seed: shuffle seed.

    Returns:
        `tf.data.Dataset` of `(int32 (B, sequence_length), int32 (B,))`.

    Raises:
        ValueError: for no texts, texts and labels of different lengths, or
            a non-positive `batch_size`.

    Example:

    ```python
    from keras_attention.data import fit_tokenizer, make_classification_dataset
    texts, labels = ["good film", "bad film"], [1, 0]
    tokenizer = fit_tokenizer(texts, kind="character")
    ids, y = next(iter(make_classification_dataset(texts, labels, tokenizer)))
    ```
    """
    _check_tokenizer(tokenizer)
    batch_size = validation.check_positive_int(batch_size, "batch_size")
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            "Received an invalid type for argument `texts`, expected a list "
            f"of strings. Received: a single {type(texts).__name__} {texts[:40]!r}"
        )
    texts = list(texts)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" and not (
        labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels))
    ):
        raise ValueError(
            "Received an invalid value for argument `labels`, expected integer "
            f"class ids. Received: labels of dtype {labels.dtype} "
            f"(first: {labels.reshape(-1)[:3].tolist()})"
        )
    labels = labels.astype(np.int32).reshape(-1)
    if not texts:
        raise ValueError(
            "Received an invalid value for argument `texts`, expected at "
            "least one text. Received: texts=[]"
        )
    if len(texts) != len(labels):
        raise ValueError(
            "Received an invalid value for argument `labels`, expected one "
            f"label per text ({len(texts)}). Received: {len(labels)} labels"
        )
    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.constant(texts, tf.string), labels)
    )
    if shuffle:
        dataset = dataset.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        tf.autograph.experimental.do_not_convert(
            lambda t, y: (tokenizer.tokenize(t), y)
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def token_stream(text, tokenizer, document_separator=False):
    """All token ids of a text (or of documents), as one int32 array.

    Args:
        text: a string, or a list of strings (documents).
        tokenizer: `WordPieceTokenizer` or `CharacterTokenizer`.
        document_separator: for a list of documents, put `[END]` after each.

    Returns:
        int32 NumPy array of token ids, no padding.

    Raises:
        ValueError: for an empty text.

    Example:

    ```python
    from keras_attention.data import fit_tokenizer, token_stream
    tokenizer = fit_tokenizer(["hello world"], kind="character")
    token_stream("hello\\nworld", tokenizer)
    ```
    """
    _check_tokenizer(tokenizer)
    documents = [text] if isinstance(text, str) else list(text)
    pieces = []
    for document in documents:
        lines = document.splitlines(keepends=True)
        for start in range(0, len(lines), 4096):
            ids = tokenizer.tokenize_ragged(tf.constant(lines[start : start + 4096]))
            pieces.append(ids.flat_values.numpy())
        if document_separator and not isinstance(text, str):
            pieces.append(np.asarray([tokenizers.END_ID], np.int32))
    stream = (
        np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
    )
    if not stream.size or not (stream != tokenizers.END_ID).any():
        raise ValueError(
            "Received an invalid value for argument `text`, expected text with "
            "at least one token. Received: an empty text"
        )
    return stream


def make_language_model_dataset(
    text, tokenizer, batch_size=32, shuffle=False, seed=None, document_separator=False
):
    """Batches of `(inputs, targets)` for next-token prediction.

    The text is tokenized into one stream and cut into consecutive windows
    of `L = tokenizer.sequence_length` tokens; the targets are the inputs
    shifted by one token (`targets[t] = inputs[t + 1]`).

    Args:
        text: a string (e.g. `docstring_text()`) or a list of documents.
        tokenizer: `WordPieceTokenizer` or `CharacterTokenizer`; its
            `sequence_length` is the window length.
        batch_size: batch size.
        shuffle: shuffle the windows (reshuffled each epoch).
        seed: shuffle seed.
        document_separator: for a list of documents, put `[END]` after each
            (so a model learns to stop).

    Returns:
        `tf.data.Dataset` of int32 `((B, L), (B, L))` pairs.

    Raises:
        ValueError: if the text has fewer than `L + 1` tokens, or a
            non-positive `batch_size`.

    Example:

    ```python
    from keras_attention.data import fit_tokenizer, make_language_model_dataset
    tokenizer = fit_tokenizer(["abc"], kind="character", sequence_length=4)
    ds = make_language_model_dataset("abcabcabcabc", tokenizer, batch_size=2)
    x, y = next(iter(ds))
    ```
    """
    batch_size = validation.check_positive_int(batch_size, "batch_size")
    stream = token_stream(text, tokenizer, document_separator)
    length = tokenizer.sequence_length
    windows = (len(stream) - 1) // length
    if windows < 1:
        raise ValueError(
            "Received an invalid value for argument `text`, expected at least "
            f"sequence_length + 1 = {length + 1} tokens. "
            f"Received: {len(stream)} tokens"
        )
    inputs = stream[: windows * length].reshape(windows, length)  # (N, L)
    targets = stream[1 : windows * length + 1].reshape(windows, length)  # (N, L)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle:
        dataset = dataset.shuffle(windows, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _check_mask_rate(mask_rate):
    if isinstance(mask_rate, bool) or not isinstance(mask_rate, (int, float)) or not (
        0 < mask_rate < 1
    ):
        raise ValueError(
            "Received an invalid value for argument `mask_rate`, expected a "
            f"float in (0, 1). Received: mask_rate={mask_rate!r}"
        )
    return float(mask_rate)


def mask_tokens(ids, vocabulary_size, mask_rate=0.15, seed=(0, 0)):
    """BERT-style corruption of token ids for masked language modelling.

    Each non-reserved token (id >= 5) is selected with probability
    `mask_rate`; a selected token becomes `[MASK]` with probability 0.8, a
    random non-reserved token with probability 0.1, and stays unchanged
    with probability 0.1. Deterministic for a given `seed`.

    Args:
        ids: int32 tensor `(B, L)`.
        vocabulary_size: tokenizer vocabulary size (random replacements are
            drawn from `[5, vocabulary_size)`).
        mask_rate: selection probability, in (0, 1).
        seed: stateless seed, a pair of integers (or an int32 tensor of
            shape `(2,)`).

    Returns:
        `(masked_ids, ids, weights)`: the corrupted ids, the original ids
        (targets) and float32 weights, 1 where a token was selected.

    Raises:
        ValueError: for `mask_rate` outside (0, 1) or a vocabulary with no
            token besides the reserved ones.

    Example:

    ```python
    import tensorflow as tf
    from keras_attention.data import mask_tokens
    masked, target, weight = mask_tokens(
        tf.constant([[5, 6, 7, 8, 0, 0]]), vocabulary_size=10, mask_rate=0.5)
    ```
    """
    mask_rate = _check_mask_rate(mask_rate)
    first = len(tokenizers.RESERVED_TOKENS)
    if vocabulary_size <= first:
        raise ValueError(
            "Received an invalid value for argument `vocabulary_size`, "
            f"expected more than {first}. Received: vocabulary_size={vocabulary_size}"
        )
    ids = tf.cast(ids, tf.int32)
    shape = tf.shape(ids)
    seed = tf.cast(seed, tf.int32)
    draw = tf.random.stateless_uniform(shape, seed=seed)
    action = tf.random.stateless_uniform(shape, seed=seed + [0, 1])
    random_ids = tf.random.stateless_uniform(
        shape, seed=seed + [0, 2], minval=first, maxval=vocabulary_size, dtype=tf.int32
    )
    selected = (ids >= first) & (draw < mask_rate)  # (B, L)
    masked = tf.where(selected & (action < 0.8), tokenizers.MASK_ID, ids)
    masked = tf.where(selected & (action >= 0.8) & (action < 0.9), random_ids, masked)
    return masked, ids, tf.cast(selected, tf.float32)


def make_masked_lm_dataset(
    texts, tokenizer, batch_size=32, mask_rate=0.15, shuffle=False, seed=0
):
    """Batches of `(masked_ids, target_ids, weights)` for MLM pre-training.

    Texts are tokenized with `tokenizer` (padded to its `sequence_length`)
    and corrupted with `mask_tokens`; Keras `fit` reads the triple as
    `(x, y, sample_weight)`, so the loss counts only the selected tokens.
    Each batch gets its own mask (seeded by `seed` and the batch index).

    Args:
        texts: list of strings.
        tokenizer: `WordPieceTokenizer` or `CharacterTokenizer`.
        batch_size: batch size.
        mask_rate: fraction of tokens selected for prediction.
        shuffle: shuffle the texts (reshuffled each epoch).
        seed: shuffle and masking seed.

    Returns:
        `tf.data.Dataset` of `(int32 (B, L), int32 (B, L), float32 (B, L))`.

    Raises:
        ValueError: for no texts or invalid arguments.

    Example:

    ```python
    from keras_attention.data import fit_tokenizer, make_masked_lm_dataset
    texts = ["the cat sat on the mat"] * 4
    tokenizer = fit_tokenizer(texts, kind="character")
    x, y, w = next(iter(make_masked_lm_dataset(texts, tokenizer, batch_size=2)))
    ```
    """
    _check_tokenizer(tokenizer)
    batch_size = validation.check_positive_int(batch_size, "batch_size")
    _check_mask_rate(mask_rate)
    texts = list(texts)
    if not texts:
        raise ValueError(
            "Received an invalid value for argument `texts`, expected at "
            "least one text. Received: texts=[]"
        )
    if not validation.is_int(seed) or not 0 <= seed < 2**31:
        raise ValueError(
            "Received an invalid value for argument `seed`, expected an int in "
            f"[0, 2**31) (the masks are seeded with it). Received: seed={seed!r}"
        )
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))
    if shuffle:
        dataset = dataset.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).enumerate()
    vocabulary_size = tokenizer.vocabulary_size

    @tf.autograph.experimental.do_not_convert
    def corrupt(index, batch):
        step_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(index, tf.int32)])
        ids = tokenizer.tokenize(batch)  # (B, L)
        return mask_tokens(ids, vocabulary_size, mask_rate, step_seed)

    return dataset.map(corrupt, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )
