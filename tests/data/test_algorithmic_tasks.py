"""The algorithmic task pipelines: layouts checked against NumPy
re-derivations of Graves et al. 2014's task definitions, seeding,
curriculum, padding and argument validation."""

import numpy as np
import pytest

from keras_attention.data import TASKS
from keras_attention.data import algorithmic_task
from keras_attention.data import associative_recall_task
from keras_attention.data import copy_task
from keras_attention.data import priority_sort_task
from keras_attention.data import repeat_copy_task


def _batches(dataset, count):
    return [tuple(t.numpy() for t in batch) for batch in dataset.take(count)]


def test_copy_layout():
    for x, y, w in _batches(copy_task(batch_size=4, num_bits=5, min_length=1, max_length=6, seed=3), 8):
        length = (x.shape[1] - 1) // 2
        assert x.shape == (4, 2 * length + 1, 6) and y.shape == (4, 2 * length + 1, 5)
        bits = x[:, :length, :5]
        assert set(np.unique(bits)) <= {0.0, 1.0}
        np.testing.assert_array_equal(x[:, :length, 5], 0)  # no delimiter yet
        np.testing.assert_array_equal(x[:, length], np.eye(6)[[5] * 4])  # delimiter only
        np.testing.assert_array_equal(x[:, length + 1 :], 0)  # silence while answering
        np.testing.assert_array_equal(y[:, length + 1 :], bits)  # the copy
        np.testing.assert_array_equal(y[:, : length + 1], 0)
        np.testing.assert_array_equal(w, np.repeat([[0] * (length + 1) + [1] * length], 4, 0))


def test_repeat_copy_layout():
    ds = repeat_copy_task(batch_size=3, num_bits=4, min_length=1, max_length=4, min_repeats=1, max_repeats=5, seed=4)
    for x, y, w in _batches(ds, 8):
        t = x.shape[1]
        length = int(np.argmax(x[0, :, 4]))  # position of the delimiter
        repeats = int(round(x[0, length, 5] * 5))
        assert 1 <= length <= 4 and 1 <= repeats <= 5
        assert t == length + 1 + repeats * length + 1
        assert x.shape[2] == 6 and y.shape[2] == 5
        bits = x[:, :length, :4]
        np.testing.assert_array_equal(x[:, :length, 4:], 0)
        np.testing.assert_allclose(x[:, length, 4:], np.tile([1.0, repeats / 5], (3, 1)))
        np.testing.assert_array_equal(x[:, length + 1 :], 0)
        answer = y[:, length + 1 :]
        for r in range(repeats):
            np.testing.assert_array_equal(answer[:, r * length : (r + 1) * length, :4], bits)
        np.testing.assert_array_equal(answer[:, :-1, 4], 0)
        np.testing.assert_array_equal(answer[:, -1], np.eye(5)[[4] * 3])  # end marker
        np.testing.assert_array_equal(w.sum(1), repeats * length + 1)
        np.testing.assert_array_equal(w[:, length + 1 :], 1)


def test_associative_recall_layout():
    item_length, num_bits = 3, 6
    ds = associative_recall_task(batch_size=5, num_bits=num_bits, item_length=item_length, min_items=2, max_items=6, seed=5)
    seen_queries = set()
    for x, y, w in _batches(ds, 10):
        for b in range(5):
            seq = x[b]
            item_starts = np.flatnonzero(seq[:, num_bits] == 1)  # item delimiters
            query_marks = np.flatnonzero(seq[:, num_bits + 1] == 1)
            k = len(item_starts)
            assert 2 <= k <= 6
            np.testing.assert_array_equal(item_starts, np.arange(k) * (item_length + 1))
            np.testing.assert_array_equal(query_marks, [k * (item_length + 1), k * (item_length + 1) + item_length + 1])
            items = [seq[s + 1 : s + 1 + item_length, :num_bits] for s in item_starts]
            query = seq[query_marks[0] + 1 : query_marks[1], :num_bits]
            matches = [i for i, item in enumerate(items) if np.array_equal(item, query)]
            assert matches and matches[0] <= k - 2
            seen_queries.add(matches[0])
            np.testing.assert_array_equal(y[b, -item_length:], items[matches[0] + 1])
            np.testing.assert_array_equal(y[b, :-item_length], 0)
            np.testing.assert_array_equal(x[b, -item_length:], 0)
            assert x.shape[1] == k * (item_length + 1) + 2 * item_length + 2
            np.testing.assert_array_equal(w[b], [0] * (x.shape[1] - item_length) + [1] * item_length)
    assert len(seen_queries) >= 3  # queries are spread over the items


def test_priority_sort_layout():
    ds = priority_sort_task(batch_size=4, num_bits=5, min_items=6, max_items=9, num_outputs=4, seed=6)
    for x, y, w in _batches(ds, 6):
        k = x.shape[1] - 1 - 4
        assert 6 <= k <= 9 and x.shape[2] == 7 and y.shape[2] == 5
        bits, priority = x[:, :k, :5], x[:, :k, 5]
        assert np.all(np.abs(priority) <= 1)
        np.testing.assert_array_equal(x[:, :k, 6], 0)
        np.testing.assert_array_equal(x[:, k], np.eye(7)[[6] * 4])
        np.testing.assert_array_equal(x[:, k + 1 :], 0)
        order = np.argsort(-priority, axis=1, kind="stable")[:, :4]  # highest first
        expected = np.take_along_axis(bits, order[:, :, None], axis=1)
        np.testing.assert_array_equal(y[:, k + 1 :], expected)
        np.testing.assert_array_equal(y[:, : k + 1], 0)
        np.testing.assert_array_equal(w.sum(1), 4)


@pytest.mark.parametrize("name", TASKS)
def test_seeded_and_reiterable(name):
    small = {"batch_size": 2, "num_batches": 4}
    a = _batches(algorithmic_task(name, seed=7, **small), 4)
    b = _batches(algorithmic_task(name, seed=7, **small), 4)
    c = _batches(algorithmic_task(name, seed=8, **small), 4)
    dataset = algorithmic_task(name, seed=7, **small)
    first, second = _batches(dataset, 4), _batches(dataset, 4)
    assert len(a) == 4
    for batch_a, batch_b, batch_1, batch_2 in zip(a, b, first, second):
        for u, v, p, q in zip(batch_a, batch_b, batch_1, batch_2):
            np.testing.assert_array_equal(u, v)
            np.testing.assert_array_equal(p, q)
    assert any(u[0].shape != v[0].shape or not np.array_equal(u[0], v[0]) for u, v in zip(a, c))


def test_bits_are_balanced_and_lengths_cover_the_range():
    batches = _batches(copy_task(batch_size=8, min_length=2, max_length=9, seed=9), 300)
    lengths = [(x.shape[1] - 1) // 2 for x, _, _ in batches]
    assert set(lengths) == set(range(2, 10))
    ones = np.mean([y[w > 0].mean() for _, y, w in batches])
    assert 0.45 < ones < 0.55


def test_curriculum_grows_the_maximum_length():
    ds = copy_task(batch_size=2, min_length=1, max_length=11, curriculum_steps=50, seed=10)
    lengths = [(x.shape[1] - 1) // 2 for x, _, _ in _batches(ds, 150)]
    assert lengths[0] == 1  # batch 0 draws from [1, 1]
    for i, length in enumerate(lengths):
        assert length <= 1 + round(10 * min(i / 50, 1.0))
    assert max(lengths[:10]) <= 3 and max(lengths[100:]) >= 9


def test_time_multiple_pads_with_silent_zero_weight_steps():
    plain = _batches(copy_task(batch_size=3, max_length=10, seed=11), 10)
    padded = _batches(copy_task(batch_size=3, max_length=10, time_multiple=8, seed=11), 10)
    for (x, y, w), (xp, yp, wp) in zip(plain, padded):
        t = x.shape[1]
        assert xp.shape[1] % 8 == 0 and t <= xp.shape[1] < t + 8
        np.testing.assert_array_equal(xp[:, :t], x)
        np.testing.assert_array_equal(yp[:, :t], y)
        np.testing.assert_array_equal(wp[:, :t], w)
        np.testing.assert_array_equal(xp[:, t:], 0)
        np.testing.assert_array_equal(wp[:, t:], 0)


def test_endless_by_default():
    assert len(_batches(copy_task(batch_size=1, max_length=2), 50)) == 50
    assert len(list(copy_task(batch_size=1, max_length=2, num_batches=3))) == 3


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: copy_task(min_length=0), "`min_length`, expected a positive integer"),
        (lambda: copy_task(min_length=5, max_length=4), "`max_length`, expected an integer >= min_length=5. Received: max_length=4"),
        (lambda: copy_task(batch_size=0), "`batch_size`, expected a positive integer"),
        (lambda: copy_task(num_bits=0), "`num_bits`, expected a positive integer"),
        (lambda: copy_task(num_batches=0), "`num_batches`, expected a positive integer"),
        (lambda: copy_task(curriculum_steps=-1), "`curriculum_steps`, expected a non-negative integer"),
        (lambda: copy_task(time_multiple=0), "`time_multiple`, expected a positive integer"),
        (lambda: copy_task(seed=-3), "`seed`, expected a non-negative integer"),
        (lambda: repeat_copy_task(min_repeats=3, max_repeats=2), "`max_repeats`, expected an integer >= min_repeats=3"),
        (lambda: associative_recall_task(min_items=1), "`min_items`, expected an integer >= 2. Received: min_items=1"),
        (lambda: associative_recall_task(item_length=0), "`item_length`, expected a positive integer"),
        (lambda: priority_sort_task(min_items=5, max_items=5, num_outputs=6), "`num_outputs`, expected an integer <= min_items=5. Received: num_outputs=6"),
        (lambda: algorithmic_task("sort"), r"`name`, expected one of \['associative_recall', 'copy', 'priority_sort', 'repeat_copy'\]"),
    ],
)
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
