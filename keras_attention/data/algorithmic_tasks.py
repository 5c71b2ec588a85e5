"""The algorithmic tasks of Graves et al. (2014) as seeded `tf.data` pipelines.

Every task yields batches `(inputs, targets, sample_weight)` ready for
`model.fit`:

- `inputs`: float32 `(B, T, input_dim)`, bits plus the task's control
  channels;
- `targets`: float32 `(B, T, output_dim)`, zero outside the output phase;
- `sample_weight`: float32 `(B, T)`, 1 on the output phase, 0 elsewhere, so
  the loss and `BitErrorsPerSequence` (in `weighted_metrics`) only see the
  steps the model must answer.

All sequences of one batch share their sizes (length, repeats, number of
items), drawn per batch, so no step is wasted on padding. Batch `i` is a pure
function of `(seed, i)` (stateless random ops), so a pipeline is
reproducible, can be iterated again with identical content, and a fixed
evaluation set is `num_batches=20` with its own seed.

Curriculum: with `curriculum_steps > 0` the upper bound of the sampled sizes
grows linearly with the batch index, from the minimum at batch 0 to the
maximum at batch `curriculum_steps` (and stays there).

Compilation: with `jit_compile=True` every distinct time length compiles
once. `time_multiple` pads the time axis with zero-weight steps up to a
multiple of it, which bounds the number of distinct lengths (padding after
the output phase changes neither the loss nor the metric of a causal model).
"""

import tensorflow as tf

from keras_attention.utils import validation

TASKS = ("copy", "repeat_copy", "associative_recall", "priority_sort")


# ---------------------------------------------------------------- helpers
def _check_range(low, high, low_name, high_name, minimum=1):
    validation.check_positive_int(low, low_name)
    validation.check_positive_int(high, high_name)
    if low < minimum:
        raise ValueError(
            f"Received an invalid value for argument `{low_name}`, expected an "
            f"integer >= {minimum}. Received: {low_name}={low}"
        )
    if high < low:
        raise ValueError(
            f"Received an invalid value for argument `{high_name}`, expected an "
            f"integer >= {low_name}={low}. Received: {high_name}={high}"
        )


def _check_common(batch_size, num_bits, num_batches, curriculum_steps, time_multiple, seed):
    validation.check_positive_int(batch_size, "batch_size")
    validation.check_positive_int(num_bits, "num_bits")
    validation.check_positive_int(num_batches, "num_batches", allow_none=True)
    validation.check_non_negative_int(curriculum_steps, "curriculum_steps")
    validation.check_positive_int(time_multiple, "time_multiple", allow_none=True)
    validation.check_non_negative_int(seed, "seed")


def _seeds(seed, index, num):
    """`num` independent stateless seeds for batch `index`."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.experimental.stateless_split(base, num)


def _upper_bound(index, low, high, curriculum_steps):
    """Largest size allowed at batch `index` under the linear curriculum."""
    if curriculum_steps == 0 or high == low:
        return tf.constant(high, tf.int32)
    progress = tf.minimum(tf.cast(index, tf.float32) / curriculum_steps, 1.0)
    grown = low + tf.math.round(progress * (high - low))
    return tf.cast(grown, tf.int32)


def _sample_size(seed, index, low, high, curriculum_steps):
    upper = _upper_bound(index, low, high, curriculum_steps)
    return tf.random.stateless_uniform(
        [], seed, minval=low, maxval=upper + 1, dtype=tf.int32
    )


def _random_bits(shape, seed):
    bits = tf.random.stateless_uniform(shape, seed) < 0.5
    return tf.cast(bits, tf.float32)


def _steps(batch_size, length, channels):
    return tf.zeros([batch_size, length, channels], tf.float32)


def _flag(batch_size, channels, index, value=1.0):
    """One time step `(B, 1, channels)` with `value` on channel `index`."""
    step = tf.one_hot(index, channels, on_value=value, dtype=tf.float32)
    return tf.tile(tf.reshape(step, [1, 1, channels]), [batch_size, 1, 1])


def _pad_time(batch, time_multiple):
    if time_multiple is None:
        return batch
    inputs, targets, weights = batch
    length = tf.shape(inputs)[1]
    pad = (-length) % time_multiple
    inputs = tf.pad(inputs, [[0, 0], [0, pad], [0, 0]])
    targets = tf.pad(targets, [[0, 0], [0, pad], [0, 0]])
    weights = tf.pad(weights, [[0, 0], [0, pad]])
    return inputs, targets, weights


def _pipeline(make_batch, num_batches, time_multiple):
    if num_batches is None:
        indices = tf.data.Dataset.counter()
    else:
        indices = tf.data.Dataset.range(num_batches)
    dataset = indices.map(
        lambda i: _pad_time(make_batch(i), time_multiple),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _weights(batch_size, quiet, answer):
    return tf.concat(
        [tf.zeros([batch_size, quiet]), tf.ones([batch_size, answer])], axis=1
    )  # (B, T)


# ------------------------------------------------------------------ tasks
def copy_task(
    batch_size=32,
    num_bits=8,
    min_length=1,
    max_length=20,
    num_batches=None,
    curriculum_steps=0,
    time_multiple=None,
    seed=0,
):
    """Copy (Graves et al. 2014, section 4.1).

    A sequence of `L` random `num_bits`-bit vectors, then a delimiter flag
    on an extra input channel; the model must then output the sequence
    again, with no input. `T = 2 L + 1`; inputs have `num_bits + 1` channels
    (the last is the delimiter), targets `num_bits`, and the output phase is
    the last `L` steps.

    Args:
        batch_size: positive int.
        num_bits: positive int, width of the vectors (8 in the paper).
        min_length: positive int, shortest sequence.
        max_length: positive int, longest sequence (20 in the paper).
        num_batches: positive int, or `None` for an endless stream.
        curriculum_steps: non-negative int; when positive, the largest
            length grows linearly from `min_length` to `max_length` over this
            many batches.
        time_multiple: positive int or `None`; pads the time axis with
            zero-weight steps to a multiple of it.
        seed: non-negative int.

    Returns:
        A `tf.data.Dataset` of `(inputs, targets, sample_weight)`.

    Raises:
        ValueError: on a non-positive size or `max_length < min_length`.

    Example:

    ```python
    from keras_attention.data import copy_task

    x, y, w = next(iter(copy_task(batch_size=2, min_length=3, max_length=3)))
    tuple(x.shape), tuple(y.shape), tuple(w.shape)  # (2, 7, 9) (2, 7, 8) (2, 7)
    ```

    References:
        - Graves, Wayne and Danihelka, 2014. [Neural Turing Machines](
          https://arxiv.org/abs/1410.5401).
    """
    _check_common(batch_size, num_bits, num_batches, curriculum_steps, time_multiple, seed)
    _check_range(min_length, max_length, "min_length", "max_length")
    channels = num_bits + 1

    def make_batch(index):
        s = _seeds(seed, index, 2)
        length = _sample_size(s[0], index, min_length, max_length, curriculum_steps)
        bits = _random_bits([batch_size, length, num_bits], s[1])  # (B, L, C)
        inputs = tf.concat(
            [
                tf.pad(bits, [[0, 0], [0, 0], [0, 1]]),
                _flag(batch_size, channels, num_bits),
                _steps(batch_size, length, channels),
            ],
            axis=1,
        )  # (B, 2L + 1, C + 1)
        targets = tf.concat(
            [_steps(batch_size, length + 1, num_bits), bits], axis=1
        )  # (B, 2L + 1, C)
        return inputs, targets, _weights(batch_size, length + 1, length)

    return _pipeline(make_batch, num_batches, time_multiple)


def repeat_copy_task(
    batch_size=32,
    num_bits=8,
    min_length=1,
    max_length=10,
    min_repeats=1,
    max_repeats=10,
    num_batches=None,
    curriculum_steps=0,
    time_multiple=None,
    seed=0,
):
    """Repeat copy (Graves et al. 2014, section 4.2).

    A sequence of `L` random vectors, then one step carrying a delimiter
    flag and the number of copies `n` scaled to `n / max_repeats` on a
    separate channel; the model must output the sequence `n` times and then
    an end marker on an extra output channel. `T = L + 1 + n L + 1`; inputs
    have `num_bits + 2` channels (bits, delimiter, repeats), targets
    `num_bits + 1` (bits, end marker), and the output phase is the last
    `n L + 1` steps. The curriculum grows both the length and the repeats.

    Args:
        batch_size: positive int.
        num_bits: positive int, width of the vectors (8 in the paper).
        min_length: positive int, shortest sequence.
        max_length: positive int, longest sequence (10 in the paper).
        min_repeats: positive int, fewest copies.
        max_repeats: positive int, most copies (10 in the paper), also the
            scale of the repeats channel.
        num_batches: positive int, or `None` for an endless stream.
        curriculum_steps: non-negative int, see the module docstring.
        time_multiple: positive int or `None`, see the module docstring.
        seed: non-negative int.

    Returns:
        A `tf.data.Dataset` of `(inputs, targets, sample_weight)`.

    Raises:
        ValueError: on a non-positive size or a maximum below its minimum.

    Example:

    ```python
    from keras_attention.data import repeat_copy_task

    ds = repeat_copy_task(batch_size=2, min_length=2, max_length=2,
                          min_repeats=3, max_repeats=3)
    x, y, w = next(iter(ds))
    tuple(x.shape), tuple(y.shape)  # (2, 10, 10) (2, 10, 9)
    ```

    References:
        - Graves, Wayne and Danihelka, 2014. [Neural Turing Machines](
          https://arxiv.org/abs/1410.5401).
    """
    _check_common(batch_size, num_bits, num_batches, curriculum_steps, time_multiple, seed)
    _check_range(min_length, max_length, "min_length", "max_length")
    _check_range(min_repeats, max_repeats, "min_repeats", "max_repeats")
    channels = num_bits + 2

    def make_batch(index):
        s = _seeds(seed, index, 3)
        length = _sample_size(s[0], index, min_length, max_length, curriculum_steps)
        repeats = _sample_size(s[1], index, min_repeats, max_repeats, curriculum_steps)
        bits = _random_bits([batch_size, length, num_bits], s[2])  # (B, L, C)
        answer = repeats * length + 1
        count = tf.cast(repeats, tf.float32) / max_repeats
        marker = _flag(batch_size, channels, num_bits) + _flag(
            batch_size, channels, num_bits + 1, count
        )  # (B, 1, C + 2)
        inputs = tf.concat(
            [
                tf.pad(bits, [[0, 0], [0, 0], [0, 2]]),
                marker,
                _steps(batch_size, answer, channels),
            ],
            axis=1,
        )  # (B, T, C + 2)
        repeated = tf.tile(bits, [1, repeats, 1])  # (B, n L, C)
        targets = tf.concat(
            [
                _steps(batch_size, length + 1, num_bits + 1),
                tf.pad(repeated, [[0, 0], [0, 0], [0, 1]]),
                _flag(batch_size, num_bits + 1, num_bits),
            ],
            axis=1,
        )  # (B, T, C + 1)
        return inputs, targets, _weights(batch_size, length + 1, answer)

    return _pipeline(make_batch, num_batches, time_multiple)


def associative_recall_task(
    batch_size=32,
    num_bits=6,
    item_length=3,
    min_items=2,
    max_items=6,
    num_batches=None,
    curriculum_steps=0,
    time_multiple=None,
    seed=0,
):
    """Associative recall (Graves et al. 2014, section 4.3).

    `k` items, each `item_length` random vectors preceded by an item
    delimiter; then a query delimiter, a copy of one item (not the last), a
    query delimiter again; the model must output the item that followed the
    queried one. `T = k (item_length + 1) + 2 item_length + 2`; inputs have
    `num_bits + 2` channels (bits, item delimiter, query delimiter), targets
    `num_bits`, and the output phase is the last `item_length` steps.

    Args:
        batch_size: positive int.
        num_bits: positive int, width of the vectors (6 in the paper).
        item_length: positive int, vectors per item (3 in the paper).
        min_items: int >= 2, fewest items.
        max_items: positive int, most items (6 in the paper).
        num_batches: positive int, or `None` for an endless stream.
        curriculum_steps: non-negative int, see the module docstring.
        time_multiple: positive int or `None`, see the module docstring.
        seed: non-negative int.

    Returns:
        A `tf.data.Dataset` of `(inputs, targets, sample_weight)`.

    Raises:
        ValueError: on a non-positive size, `min_items < 2` or
            `max_items < min_items`.

    Example:

    ```python
    from keras_attention.data import associative_recall_task

    ds = associative_recall_task(batch_size=2, min_items=3, max_items=3)
    x, y, w = next(iter(ds))
    tuple(x.shape), tuple(y.shape)  # (2, 20, 8) (2, 20, 6)
    ```

    References:
        - Graves, Wayne and Danihelka, 2014. [Neural Turing Machines](
          https://arxiv.org/abs/1410.5401).
    """
    _check_common(batch_size, num_bits, num_batches, curriculum_steps, time_multiple, seed)
    validation.check_positive_int(item_length, "item_length")
    _check_range(min_items, max_items, "min_items", "max_items", minimum=2)
    channels = num_bits + 2

    def make_batch(index):
        s = _seeds(seed, index, 3)
        items = _sample_size(s[0], index, min_items, max_items, curriculum_steps)
        bits = _random_bits([batch_size, items, item_length, num_bits], s[1])
        query = tf.random.stateless_uniform(
            [batch_size], s[2], minval=0, maxval=items - 1, dtype=tf.int32
        )  # (B,)
        item_steps = tf.pad(bits, [[0, 0], [0, 0], [0, 0], [0, 2]])
        delimiter = tf.tile(
            tf.reshape(tf.one_hot(num_bits, channels), [1, 1, 1, channels]),
            [batch_size, items, 1, 1],
        )
        stream = tf.reshape(
            tf.concat([delimiter, item_steps], axis=2),
            [batch_size, items * (item_length + 1), channels],
        )  # (B, k (l + 1), C + 2)
        asked = tf.gather(bits, query, batch_dims=1)  # (B, l, C)
        answer = tf.gather(bits, query + 1, batch_dims=1)  # (B, l, C)
        query_flag = _flag(batch_size, channels, num_bits + 1)
        inputs = tf.concat(
            [
                stream,
                query_flag,
                tf.pad(asked, [[0, 0], [0, 0], [0, 2]]),
                query_flag,
                _steps(batch_size, item_length, channels),
            ],
            axis=1,
        )  # (B, T, C + 2)
        quiet = items * (item_length + 1) + item_length + 2
        targets = tf.concat(
            [_steps(batch_size, quiet, num_bits), answer], axis=1
        )  # (B, T, C)
        return inputs, targets, _weights(batch_size, quiet, item_length)

    return _pipeline(make_batch, num_batches, time_multiple)


def priority_sort_task(
    batch_size=32,
    num_bits=8,
    min_items=20,
    max_items=20,
    num_outputs=16,
    num_batches=None,
    curriculum_steps=0,
    time_multiple=None,
    seed=0,
):
    """Priority sort (Graves et al. 2014, section 4.5).

    `k` random vectors, each with a priority drawn uniformly from `[-1, 1]`
    on an extra channel, then a delimiter; the model must output the
    `num_outputs` highest-priority vectors, highest first. `T = k + 1 +
    num_outputs`; inputs have `num_bits + 2` channels (bits, priority,
    delimiter), targets `num_bits`, and the output phase is the last
    `num_outputs` steps. The paper uses 20 inputs and 16 outputs.

    Args:
        batch_size: positive int.
        num_bits: positive int, width of the vectors (8 in the paper).
        min_items: positive int, fewest input vectors.
        max_items: positive int, most input vectors.
        num_outputs: positive int, at most `min_items`.
        num_batches: positive int, or `None` for an endless stream.
        curriculum_steps: non-negative int, see the module docstring.
        time_multiple: positive int or `None`, see the module docstring.
        seed: non-negative int.

    Returns:
        A `tf.data.Dataset` of `(inputs, targets, sample_weight)`.

    Raises:
        ValueError: on a non-positive size, `max_items < min_items` or
            `num_outputs > min_items`.

    Example:

    ```python
    from keras_attention.data import priority_sort_task

    ds = priority_sort_task(batch_size=2, min_items=5, max_items=5,
                            num_outputs=3)
    x, y, w = next(iter(ds))
    tuple(x.shape), tuple(y.shape)  # (2, 9, 10) (2, 9, 8)
    ```

    References:
        - Graves, Wayne and Danihelka, 2014. [Neural Turing Machines](
          https://arxiv.org/abs/1410.5401).
    """
    _check_common(batch_size, num_bits, num_batches, curriculum_steps, time_multiple, seed)
    _check_range(min_items, max_items, "min_items", "max_items")
    validation.check_positive_int(num_outputs, "num_outputs")
    if num_outputs > min_items:
        raise ValueError(
            "Received an invalid value for argument `num_outputs`, expected an "
            f"integer <= min_items={min_items}. Received: num_outputs={num_outputs}"
        )
    channels = num_bits + 2

    def make_batch(index):
        s = _seeds(seed, index, 3)
        items = _sample_size(s[0], index, min_items, max_items, curriculum_steps)
        bits = _random_bits([batch_size, items, num_bits], s[1])  # (B, k, C)
        priority = tf.random.stateless_uniform(
            [batch_size, items], s[2], minval=-1.0, maxval=1.0
        )  # (B, k)
        order = tf.math.top_k(priority, k=num_outputs).indices  # (B, m)
        answer = tf.gather(bits, order, batch_dims=1)  # (B, m, C)
        inputs = tf.concat(
            [
                tf.pad(
                    tf.concat([bits, priority[:, :, None]], axis=2),
                    [[0, 0], [0, 0], [0, 1]],
                ),  # (B, k, C + 2): bits, priority, delimiter 0
                _flag(batch_size, channels, num_bits + 1),
                _steps(batch_size, num_outputs, channels),
            ],
            axis=1,
        )  # (B, T, C + 2)
        targets = tf.concat(
            [_steps(batch_size, items + 1, num_bits), answer], axis=1
        )  # (B, T, C)
        return inputs, targets, _weights(batch_size, items + 1, num_outputs)

    return _pipeline(make_batch, num_batches, time_multiple)


_TASK_FUNCTIONS = {
    "copy": copy_task,
    "repeat_copy": repeat_copy_task,
    "associative_recall": associative_recall_task,
    "priority_sort": priority_sort_task,
}


def algorithmic_task(name, **kwargs):
    """One of the algorithmic tasks by name.

    Args:
        name: one of `"copy"`, `"repeat_copy"`, `"associative_recall"`,
            `"priority_sort"`.
        **kwargs: arguments of the task's function (`copy_task`, ...).

    Returns:
        A `tf.data.Dataset` of `(inputs, targets, sample_weight)`.

    Raises:
        ValueError: on an unknown name, or invalid task arguments.

    Example:

    ```python
    from keras_attention.data import algorithmic_task

    ds = algorithmic_task("copy", batch_size=2, max_length=4, num_batches=3)
    len(list(ds))  # 3
    ```
    """
    validation.check_one_of(name, "name", TASKS)
    return _TASK_FUNCTIONS[name](**kwargs)
