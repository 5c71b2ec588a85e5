import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attention.training import BleuCallback
from keras_attention.training import corpus_bleu


def _bleu(matches, totals, hyp_len, ref_len):
    """BLEU from hand-counted clipped n-gram matches (Papineni et al. 2002)."""
    log_p = np.mean([math.log(m / t) for m, t in zip(matches, totals)])
    bp = 1.0 if hyp_len >= ref_len else math.exp(1.0 - ref_len / hyp_len)
    return 100.0 * bp * math.exp(log_p)


def test_identical_is_100_and_disjoint_is_0():
    refs = ["the cat sat on the mat", "a quick brown fox jumps"]
    assert corpus_bleu(refs, refs) == pytest.approx(100.0)
    assert corpus_bleu(["w x y z v", "q r s t u"], refs) == 0.0


def test_partial_match_hand_derived():
    # hyp: the cat sat on the mat / ref: the cat sat on a mat
    # 1-grams 5/6 ("the" clipped to 1), 2-grams 3/5, 3-grams 2/4, 4-grams 1/3,
    # equal lengths -> no brevity penalty: BLEU = (1/12)^(1/4).
    got = corpus_bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert got == pytest.approx(_bleu([5, 3, 2, 1], [6, 5, 4, 3], 6, 6), rel=1e-9)
    assert got == pytest.approx(100 * (1 / 12) ** 0.25, rel=1e-9)


def test_brevity_penalty_hand_derived():
    # Every n-gram of the hypothesis matches; c=4 < r=6: BP = exp(1 - 6/4).
    got = corpus_bleu(["the cat sat on"], ["the cat sat on the mat"])
    assert got == pytest.approx(100 * math.exp(-0.5), rel=1e-9)


def test_corpus_level_counts_are_pooled_not_averaged():
    hyps = ["the cat sat on the mat", "the cat sat on"]
    refs = ["the cat sat on a mat", "the cat sat on the mat"]
    expected = _bleu([5 + 4, 3 + 3, 2 + 2, 1 + 1], [6 + 4, 5 + 3, 4 + 2, 3 + 1], 10, 12)
    got = corpus_bleu(hyps, refs)
    assert got == pytest.approx(expected, rel=1e-9)
    sentence_mean = (
        corpus_bleu(hyps[:1], refs[:1]) + corpus_bleu(hyps[1:], refs[1:])
    ) / 2
    assert abs(got - sentence_mean) > 0.5  # 56.39 pooled vs 57.19 averaged


def test_multiple_references_bytes_and_arrays():
    # Clipping uses the max count over references: "the" x2 now matches.
    hyps = np.array([b"the cat sat on the mat"])
    refs = [["the cat sat on a mat", "on the mat the cat sat"]]
    got = corpus_bleu(hyps, refs)
    # 1-grams 6/6; 2-grams: the cat, cat sat, sat on, on the, the mat -> 5/5;
    # 3-grams: the cat sat, cat sat on (ref 1), on the mat (ref 2), sat on the
    # (none) -> 3/4; 4-grams: the cat sat on (ref 1) -> 1/3.
    assert got == pytest.approx(_bleu([6, 5, 3, 1], [6, 5, 4, 3], 6, 6), rel=1e-9)


def test_lowercase_and_tokenize_options():
    assert corpus_bleu(["The Cat sat on it ."], ["the cat sat on it."]) < 100.0
    assert corpus_bleu(
        ["The Cat sat on it ."], ["the cat sat on it."], lowercase=True
    ) == pytest.approx(100.0)


def test_corpus_bleu_bad_input():
    with pytest.raises(
        ValueError,
        match=r"argument `hypotheses`, expected a non-empty sequence of strings",
    ):
        corpus_bleu([], [])
    with pytest.raises(
        ValueError,
        match=r"expected one reference item per hypothesis\. Received: 2 "
        r"hypotheses and 1 references",
    ):
        corpus_bleu(["a b c d", "e f g h"], ["a b c d"])
    with pytest.raises(
        ValueError,
        match=r"expected the same number \(>= 1\) of references for every "
        r"hypothesis\. Received: counts \[1, 2\]",
    ):
        corpus_bleu(["a b c d", "e f g h"], [["a b c d"], ["e f g h", "x"]])
    with pytest.raises(
        ValueError,
        match=r"argument `hypotheses`, expected strings \(str or UTF-8 bytes\)\. "
        r"Received: hypotheses\[1\] of type int",
    ):
        corpus_bleu(["a b c d", 3], ["a b c d", "e"])


# ---------------------------------------------------------------- callback

SOURCES = ["one two three four five", "six seven eight nine ten", "a b c d e"]
REFERENCES = ["ONE TWO THREE FOUR FIVE", "SIX SEVEN EIGHT NINE TEN", "A B C D E"]


def _upper(batch):
    items = np.asarray(batch).tolist()
    return [s.decode() if isinstance(s, bytes) else s for s in items]


def _fit(callbacks, epochs=2):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model.fit(
        np.ones((2, 1)), np.ones((2, 1)), epochs=epochs, verbose=0, callbacks=callbacks
    )


def test_callback_logs_bleu_into_history_with_batching():
    calls = []

    def translate(batch):
        calls.append(len(batch))
        # Right for the first two sentences, wrong for the third.
        return [
            s.upper() if s != "a b c d e" else "V W X Y Z" for s in batch
        ]

    bleu = BleuCallback((SOURCES, REFERENCES), translate, batch_size=2)
    history = _fit([bleu])
    expected = corpus_bleu(
        ["ONE TWO THREE FOUR FIVE", "SIX SEVEN EIGHT NINE TEN", "V W X Y Z"],
        REFERENCES,
    )
    assert 0 < expected < 100
    assert history.history["val_bleu"] == pytest.approx([expected, expected])
    assert calls == [2, 1, 2, 1]
    assert bleu.score == pytest.approx(expected)


def test_callback_with_a_batched_dataset_every_n_epochs_and_name():
    dataset = tf.data.Dataset.from_tensor_slices((SOURCES, REFERENCES)).batch(2)
    bleu = BleuCallback(
        dataset,
        lambda batch: [s.upper() for s in _upper(batch)],
        every_n_epochs=2,
        name="bleu",
    )
    history = _fit([bleu], epochs=4)
    # Only epochs 2 and 4 are scored; History keeps the key from its first
    # appearance on.
    assert history.history["bleu"] == pytest.approx([100.0, 100.0])
    assert history.epoch == [0, 1, 2, 3]


def test_callback_reaches_later_callbacks():
    seen = []
    spy = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(logs.get("val_bleu"))
    )
    bleu = BleuCallback((SOURCES, REFERENCES), lambda b: [s.upper() for s in b])
    _fit([bleu, spy], epochs=1)
    assert seen == [pytest.approx(100.0)]


def test_callback_bad_input():
    with pytest.raises(
        TypeError, match=r"argument `translate_fn`, expected a callable"
    ):
        BleuCallback((SOURCES, REFERENCES), "not callable")
    with pytest.raises(
        ValueError,
        match=r"argument `data`, expected \(sources, references\) of the same "
        r"length\. Received: 3 sources and 2 references",
    ):
        BleuCallback((SOURCES, REFERENCES[:2]), _upper)
    with pytest.raises(
        ValueError, match=r"argument `every_n_epochs`, expected a positive integer"
    ):
        BleuCallback((SOURCES, REFERENCES), _upper, every_n_epochs=0)
    with pytest.raises(
        ValueError, match=r"argument `batch_size`, expected a positive integer"
    ):
        BleuCallback((SOURCES, REFERENCES), _upper, batch_size=0)
    wrong_count = BleuCallback((SOURCES, REFERENCES), lambda b: ["x"])
    with pytest.raises(
        ValueError,
        match=r"argument `translate_fn`, expected one hypothesis per source\. "
        r"Received: 1 hypotheses for a batch of 3",
    ):
        wrong_count.evaluate()
    unbatched = tf.data.Dataset.from_tensor_slices((SOURCES, REFERENCES))
    with pytest.raises(
        ValueError,
        match=r"argument `data`, expected batches of \(sources, references\)",
    ):
        BleuCallback(unbatched, _upper).evaluate()
