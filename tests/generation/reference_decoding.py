"""Independent NumPy references for the generation tests (imported by path).

They call the model's full forward pass (no caches, no compiled loop) once
per generated token, one row at a time.
"""

import keras
import numpy as np


def log_softmax(logits):
    logits = logits - logits.max(axis=-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))


def next_token_logits(model, prefix, source=None):
    """Float64 logits for the token after `prefix` (1-D list of ids)."""
    if source is None:
        inputs = np.array([prefix])
    else:
        inputs = {"source_ids": np.array([source]), "target_ids": np.array([prefix])}
    return keras.ops.convert_to_numpy(model(inputs))[0, -1].astype("float64")


def greedy_reference(model, prompts, max_new_tokens, end_ids=(), sources=None):
    """Greedy decoding of each right-padded row alone; pad id 0 excluded."""
    width = prompts.shape[1]
    out = np.zeros((len(prompts), width + max_new_tokens), "int32")
    for r, row in enumerate(prompts):
        seq = [int(t) for t in row if t != 0]
        for _ in range(max_new_tokens):
            logits = next_token_logits(model, seq, None if sources is None else sources[r])
            logits[0] = -np.inf
            seq.append(int(logits.argmax()))
            if seq[-1] in end_ids:
                break
        out[r, : len(seq)] = seq
    return out


def sequence_score(model, row, prompt_length, alpha, source=None):
    """GNMT-normalised log-probability of the tokens after the prompt."""
    seq = [int(t) for t in row if t != 0]
    generated = len(seq) - prompt_length
    if source is None:
        inputs = np.array([seq[:-1]])
    else:
        inputs = {"source_ids": np.array([source]), "target_ids": np.array([seq[:-1]])}
    logp = log_softmax(keras.ops.convert_to_numpy(model(inputs))[0].astype("float64"))
    total = sum(logp[t - 1, seq[t]] for t in range(prompt_length, len(seq)))
    return total / ((5.0 + generated) / 6.0) ** alpha
