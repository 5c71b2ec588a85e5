"""BERT's 80/10/10 token masking for masked-language-model pre-training."""

import numbers

import numpy as np


def _check_rate(value, name, low_open):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = (0 < value <= 1) if low_open else (0 <= value <= 1)
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"number in {interval}. Received: {name}={value!r}"
        )
    return float(value)


def _check_id(value, name, vocabulary_size):
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or not 0 <= value < vocabulary_size
    ):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"token id in [0, vocabulary_size={vocabulary_size}). Received: "
            f"{name}={value!r}"
        )
    return int(value)


def mlm_mask_tokens(
    token_ids,
    vocabulary_size,
    mask_token_id,
    special_token_ids=(),
    selection_rate=0.15,
    mask_token_rate=0.8,
    random_token_rate=0.1,
    seed=None,
):
    """Mask tokens for masked-language-model training (BERT's 80/10/10).

    Each non-special token is selected for prediction independently with
    probability `selection_rate` (15%). A selected token is replaced by
    `mask_token_id` with probability `mask_token_rate` (80%), by a random
    non-special token id with probability `random_token_rate` (10%), and
    left unchanged otherwise (10%); the model must predict the original
    token at every selected position. Padding (id 0), `mask_token_id` and
    `special_token_ids` (e.g. [CLS], [SEP]) are never selected, never
    replaced and never drawn as random tokens.

    Works on NumPy arrays (e.g. batches of a `tf.data` pipeline converted
    with `.as_numpy_iterator()`, or inside `tf.numpy_function`); draw a new
    masking for every epoch by passing a `numpy.random.Generator` that lives
    across calls.

    Args:
        token_ids: integer array of any shape, e.g. `(B, T)`, with ids in
            `[0, vocabulary_size)`.
        vocabulary_size: number of token ids.
        mask_token_id: id of the [MASK] token.
        special_token_ids: ids that are never selected or drawn (padding 0
            and `mask_token_id` are always special).
        selection_rate: probability that a non-special token is selected,
            in `(0, 1]`.
        mask_token_rate: probability that a selected token becomes
            `mask_token_id`, in `[0, 1]`.
        random_token_rate: probability that a selected token becomes a
            random token, in `[0, 1]`, with `mask_token_rate +
            random_token_rate <= 1`.
        seed: `None`, an int, or a `numpy.random.Generator`.

    Returns:
        Tuple `(inputs, labels, sample_weights)` of the shape of
        `token_ids`: the masked ids (int32), the original id at selected
        positions and 0 elsewhere (int32), and 1.0 at selected positions, 0.0
        elsewhere (float32).

    Raises:
        ValueError: on rates outside their range, ids outside the
            vocabulary, or no token id left to draw random tokens from.

    Example:

    ```python
    import numpy as np
    from keras_attention.models import mlm_mask_tokens
    ids = np.array([[5, 6, 7, 8, 9, 0, 0]])
    inputs, labels, weights = mlm_mask_tokens(
        ids, vocabulary_size=12, mask_token_id=1, seed=0)
    inputs.shape, labels.shape, weights.dtype  # (1, 7), (1, 7), float32
    ```

    References:
        Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional
        Transformers for Language Understanding", section 3.1, Task #1.
    """
    if not isinstance(vocabulary_size, numbers.Integral) or vocabulary_size < 2:
        raise ValueError(
            "Received an invalid value for argument `vocabulary_size`, "
            "expected an integer >= 2. Received: "
            f"vocabulary_size={vocabulary_size!r}"
        )
    mask_token_id = _check_id(mask_token_id, "mask_token_id", vocabulary_size)
    special = {0, mask_token_id}
    for token in special_token_ids:
        special.add(_check_id(token, "special_token_ids", vocabulary_size))
    selection_rate = _check_rate(selection_rate, "selection_rate", True)
    mask_token_rate = _check_rate(mask_token_rate, "mask_token_rate", False)
    random_token_rate = _check_rate(random_token_rate, "random_token_rate", False)
    if mask_token_rate + random_token_rate > 1:
        raise ValueError(
            "Received invalid values for arguments `mask_token_rate` and "
            "`random_token_rate`, expected a sum <= 1. Received: "
            f"mask_token_rate={mask_token_rate}, "
            f"random_token_rate={random_token_rate}"
        )
    token_ids = np.asarray(token_ids)
    if not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(
            "Received an invalid value for argument `token_ids`, expected an "
            f"integer array. Received: token_ids.dtype={token_ids.dtype}"
        )
    if token_ids.size and (token_ids.min() < 0 or token_ids.max() >= vocabulary_size):
        raise ValueError(
            "Received an invalid value for argument `token_ids`, expected ids "
            f"in [0, vocabulary_size={vocabulary_size}). Received: ids in "
            f"[{token_ids.min()}, {token_ids.max()}]"
        )
    drawable = np.setdiff1d(np.arange(vocabulary_size), sorted(special))
    if random_token_rate > 0 and drawable.size == 0:
        raise ValueError(
            "Received an invalid value for argument `special_token_ids`, "
            "expected at least one non-special token id to draw random "
            f"tokens from. Received: special_token_ids={sorted(special)}"
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    candidates = ~np.isin(token_ids, sorted(special))
    selected = candidates & (rng.random(token_ids.shape) < selection_rate)
    choice = rng.random(token_ids.shape)
    to_mask = selected & (choice < mask_token_rate)
    to_random = selected & (choice >= mask_token_rate) & (
        choice < mask_token_rate + random_token_rate
    )
    inputs = token_ids.astype("int32")
    inputs[to_mask] = mask_token_id
    if drawable.size:
        inputs[to_random] = rng.choice(drawable, size=int(to_random.sum()))
    labels = np.where(selected, token_ids, 0).astype("int32")
    return inputs, labels, selected.astype("float32")
