"""NumPy reference shared by the classic attention layer tests."""

import numpy as np


def np_attention(logits, mask, value):
    """Masked softmax over the last axis of (B, T, S) logits, then the
    weighted average of the (B, S, Dv) values; fully masked rows give zero
    weights. Returns (output (B, T, Dv), weights (B, T, S)) in float64."""
    logits = np.asarray(logits, "float64")
    mask = np.broadcast_to(np.asarray(mask, bool), logits.shape)
    shifted = np.where(mask, logits, -np.inf)
    row_max = np.max(shifted, -1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    unnorm = np.where(mask, np.exp(shifted - row_max), 0.0)
    total = unnorm.sum(-1, keepdims=True)
    weights = np.divide(unnorm, total, out=np.zeros_like(unnorm), where=total > 0)
    return np.einsum("bts,bsd->btd", weights, np.asarray(value, "float64")), weights
