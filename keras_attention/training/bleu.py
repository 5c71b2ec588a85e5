"""Corpus BLEU (through sacrebleu) as a function and as a Keras callback."""

import keras
import numpy as np

from keras_attention.utils.validation import check_bool
from keras_attention.utils.validation import check_positive_int


def _to_text(value, name, index):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise ValueError(
        f"Received an invalid value for argument `{name}`, expected strings "
        f"(str or UTF-8 bytes). Received: {name}[{index}] of type "
        f"{type(value).__name__}"
    )


def _to_list(values):
    """A Python list from a list, tuple, NumPy array or eager tensor."""
    if isinstance(values, (list, tuple)):
        return list(values)
    return np.asarray(values).tolist()


def corpus_bleu(hypotheses, references, tokenize="13a", lowercase=False):
    """Corpus-level BLEU score (0-100) computed by sacrebleu.

    BLEU (Papineni et al. 2002) is the geometric mean of the clipped 1- to
    4-gram precisions, counted over the whole corpus (not averaged over
    sentences), times the brevity penalty `exp(1 - r / c)` when the total
    hypothesis length `c` is below the reference length `r`. sacrebleu (Post
    2018) fixes the tokenization (`"13a"`, the WMT standard, by default) so
    scores are comparable across papers; use it on detokenized text. As in
    sacrebleu, corpora with no 4-gram at all (every sentence shorter than 4
    tokens) score 0.

    Args:
        hypotheses: sequence of `N` hypothesis strings (str or UTF-8 bytes).
        references: sequence of `N` items; item `i` is the reference string
            of `hypotheses[i]`, or a sequence of reference strings (the same
            number for every hypothesis) when there are several.
        tokenize: sacrebleu tokenizer name (`"13a"`, `"intl"`, `"char"`,
            `"none"`, ...).
        lowercase: bool, compare lower-cased text.

    Returns:
        The BLEU score as a Python float in [0, 100].

    Raises:
        ValueError: if the corpus is empty, `hypotheses` and `references`
            differ in length, the number of references varies, or an item is
            not a string.

    Example:

    ```python
    from keras_attention.training import corpus_bleu
    corpus_bleu(["the cat sat on the mat"], ["the cat sat on the mat"])  # 100.0
    ```

    References:
        - Papineni et al., "BLEU: a Method for Automatic Evaluation of Machine
          Translation", ACL 2002.
        - Post, "A Call for Clarity in Reporting BLEU Scores", WMT 2018.
    """
    import sacrebleu

    lowercase = check_bool(lowercase, "lowercase")
    hypotheses = _to_list(hypotheses)
    references = _to_list(references)
    if not hypotheses:
        raise ValueError(
            "Received an invalid value for argument `hypotheses`, expected a "
            "non-empty sequence of strings. Received: hypotheses=[]"
        )
    if len(hypotheses) != len(references):
        raise ValueError(
            "Received incompatible arguments `hypotheses` and `references`, "
            "expected one reference item per hypothesis. Received: "
            f"{len(hypotheses)} hypotheses and {len(references)} references"
        )
    hyps = [_to_text(h, "hypotheses", i) for i, h in enumerate(hypotheses)]
    refs = []
    for i, item in enumerate(references):
        if isinstance(item, (str, bytes)):
            item = [item]
        refs.append([_to_text(r, "references", i) for r in _to_list(item)])
    num_refs = len(refs[0])
    if num_refs == 0 or any(len(r) != num_refs for r in refs):
        raise ValueError(
            "Received an invalid value for argument `references`, expected "
            "the same number (>= 1) of references for every hypothesis. "
            f"Received: counts {sorted({len(r) for r in refs})}"
        )
    streams = [[r[k] for r in refs] for k in range(num_refs)]
    metric = sacrebleu.metrics.BLEU(tokenize=tokenize, lowercase=lowercase)
    return float(metric.corpus_score(hyps, streams).score)


class BleuCallback(keras.callbacks.Callback):
    """Compute corpus BLEU on a validation set at the end of epochs.

    At the end of every `every_n_epochs`-th epoch, `translate_fn` is called
    on each batch of sources and the corpus BLEU of all hypotheses against
    the references is written into the epoch `logs` under `name`, so it
    reaches `History`, `CSVLogger`, `TensorBoard`, `EarlyStopping`, ... that
    come after this callback in the `callbacks` list (Keras adds `History`
    last). The last score is also kept in `self.score`.

    Args:
        data: the validation set: a pair `(sources, references)` of
            equal-length sequences (split into batches of `batch_size`), or
            an iterable of `(sources, references)` batches such as a
            batched `tf.data.Dataset`. A reference item is a string or a
            sequence of reference strings.
        translate_fn: callable mapping a batch of sources to a sequence of
            hypothesis strings (str or UTF-8 bytes), one per source; it
            usually closes over the model being trained.
        batch_size: int, batch size used to split a `(sources, references)`
            pair.
        every_n_epochs: int, compute BLEU every this many epochs.
        name: the key written into `logs`.
        tokenize: sacrebleu tokenizer name.
        lowercase: bool, compare lower-cased text.
        verbose: bool, print the score after each evaluation.

    Raises:
        ValueError: if `batch_size` or `every_n_epochs` is not a positive
            integer, `data` is a pair of different lengths, a dataset batch is
            not batched, or `translate_fn` returns the wrong number of
            hypotheses.
        TypeError: if `translate_fn` is not callable.

    Example:

    ```python
    import numpy as np, keras
    from keras_attention.training import BleuCallback
    sources = ["one two three four", "five six seven eight"]
    bleu = BleuCallback((sources, sources), translate_fn=lambda batch: batch)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(np.ones((2, 1)), np.ones((2, 1)), verbose=0,
                        callbacks=[bleu])
    history.history["val_bleu"]  # [100.0]
    ```

    References:
        - Papineni et al., "BLEU: a Method for Automatic Evaluation of Machine
          Translation", ACL 2002.
        - Post, "A Call for Clarity in Reporting BLEU Scores", WMT 2018.
    """

    def __init__(
        self,
        data,
        translate_fn,
        batch_size=32,
        every_n_epochs=1,
        name="val_bleu",
        tokenize="13a",
        lowercase=False,
        verbose=False,
    ):
        super().__init__()
        if not callable(translate_fn):
            raise TypeError(
                "Received an invalid type for argument `translate_fn`, expected "
                "a callable. Received: translate_fn of type "
                f"{type(translate_fn).__name__}"
            )
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.every_n_epochs = check_positive_int(every_n_epochs, "every_n_epochs")
        if isinstance(data, tuple) and len(data) == 2:
            sources, references = data
            if len(sources) != len(references):
                raise ValueError(
                    "Received an invalid value for argument `data`, expected "
                    "(sources, references) of the same length. Received: "
                    f"{len(sources)} sources and {len(references)} references"
                )
        self.data = data
        self.translate_fn = translate_fn
        self.name = name
        self.tokenize = tokenize
        self.lowercase = check_bool(lowercase, "lowercase")
        self.verbose = check_bool(verbose, "verbose")
        self.score = None

    def _batches(self):
        if isinstance(self.data, tuple) and len(self.data) == 2:
            sources, references = self.data
            for start in range(0, len(sources), self.batch_size):
                stop = start + self.batch_size
                yield sources[start:stop], references[start:stop]
            return
        for element in self.data:
            sources, references = element
            if np.ndim(references) == 0:
                raise ValueError(
                    "Received an invalid value for argument `data`, expected "
                    "batches of (sources, references) (e.g. "
                    "`dataset.batch(32)`). Received: an unbatched element"
                )
            yield sources, references

    def evaluate(self):
        """Translate the whole validation set and return its corpus BLEU."""
        hypotheses, references = [], []
        for sources, refs in self._batches():
            hyps = _to_list(self.translate_fn(sources))
            refs = _to_list(refs)
            if len(hyps) != len(refs):
                raise ValueError(
                    "Received an invalid value for argument `translate_fn`, "
                    "expected one hypothesis per source. Received: "
                    f"{len(hyps)} hypotheses for a batch of {len(refs)}"
                )
            hypotheses.extend(hyps)
            references.extend(refs)
        return corpus_bleu(
            hypotheses, references, tokenize=self.tokenize, lowercase=self.lowercase
        )

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        self.score = self.evaluate()
        if logs is not None:
            logs[self.name] = self.score
        if self.verbose:
            print(f"Epoch {epoch + 1}: {self.name} = {self.score:.2f}")
