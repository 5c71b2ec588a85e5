"""Pure functions on next-token logits: filtering, sampling, length penalty.

Shape letters: B batch (rows), V vocabulary size. Logits are float32.
"""

from keras import ops

# A logit that no kept token can lose to, yet finite: `NEG + NEG` stays
# finite in float32, so masked beams never produce NaN.
NEG = -1e9


def length_penalty(length, alpha):
    """GNMT's length penalty `lp(Y) = (5 + |Y|)^alpha / 6^alpha`.

    Beam search ranks a hypothesis `Y` by `log P(Y | X) / lp(Y)`, so that
    longer hypotheses are not pushed out merely for summing more negative
    log-probabilities. `alpha = 0` gives `lp = 1` (raw log-probability);
    the Transformer paper used `alpha = 0.6`.

    Args:
        length: `|Y|`, the number of generated tokens (int, array or
            tensor).
        alpha: the strength, a float >= 0.

    Returns:
        `lp(Y)`, float32, of the shape of `length`.

    Example:

    ```python
    from keras_attention.generation import length_penalty
    float(length_penalty(1, 0.6))  # 1.0
    ```

    References:
        Wu et al., 2016, "Google's Neural Machine Translation System",
        section 7, eq. 14.
    """
    length = ops.cast(length, "float32")
    return ops.power((5.0 + length) / 6.0, alpha)


def top_k_logits(logits, k):
    """Keep the `k` largest logits of each row; the rest become `NEG`.

    Args:
        logits: `(B, V)` float tensor.
        k: int, `1 <= k <= V`.

    Returns:
        `(B, V)` logits in which only the top `k` entries (and ties with the
        k-th) are kept.

    Example:

    ```python
    import numpy as np
    from keras_attention.generation import top_k_logits
    top_k_logits(np.array([[1.0, 3.0, 2.0]]), 2)  # [[-1e9, 3., 2.]]
    ```
    """
    kth = ops.top_k(logits, k, sorted=True)[0][:, -1:]  # (B, 1)
    return ops.where(ops.less(logits, kth), ops.cast(NEG, logits.dtype), logits)


def top_p_logits(logits, p):
    """Nucleus filtering: keep the smallest top set with probability >= `p`.

    Tokens are sorted by probability; a token is kept when the probability
    of the tokens ranked strictly before it is below `p`, so the most
    likely token is always kept and `p = 1` keeps everything.

    Args:
        logits: `(B, V)` float tensor.
        p: float or scalar tensor in `(0, 1]`.

    Returns:
        `(B, V)` logits with the tokens outside the nucleus set to `NEG`.

    Example:

    ```python
    import numpy as np
    from keras_attention.generation import top_p_logits
    logits = np.log(np.array([[0.5, 0.3, 0.2]], "float32"))
    top_p_logits(logits, 0.7)  # keeps 0.5 and 0.3
    ```

    References:
        Holtzman et al., 2020, "The Curious Case of Neural Text
        Degeneration", section 3.1.
    """
    logits = ops.convert_to_tensor(logits)
    sorted_logits = ops.flip(ops.sort(logits, axis=-1), axis=-1)  # (B, V), descending
    probs = ops.softmax(ops.cast(sorted_logits, "float32"), axis=-1)  # (B, V)
    before = ops.cumsum(probs, axis=-1) - probs  # (B, V), mass ranked above
    kept = ops.less(before, ops.cast(p, "float32"))  # (B, V)
    # The smallest kept logit is the threshold (the first one is always kept).
    threshold = ops.min(
        ops.where(kept, sorted_logits, ops.cast(-NEG, logits.dtype)), axis=-1,
        keepdims=True,
    )  # (B, 1)
    return ops.where(ops.less(logits, threshold), ops.cast(NEG, logits.dtype), logits)
