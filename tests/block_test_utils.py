"""Helpers shared by the encoder and decoder block tests."""

import numpy as np

# keras-hub sub-layer paths -> ours (the rest of the path is identical).
_HUB_TO_OURS = (
    ("self_attention_layer/", "self_attention/"),
    ("feedforward_intermediate_dense/", "feedforward/intermediate_dense/"),
    ("feedforward_output_dense/", "feedforward/output_dense/"),
)


def _relative_path(weight):
    return weight.path.split("/", 1)[1]


def copy_weights_from_keras_hub(hub_layer, our_layer):
    """Assign keras-hub's weights to ours by sub-layer path; return count."""
    ours = {_relative_path(w): w for w in our_layer.weights}
    copied = 0
    for weight in hub_layer.weights:
        path = _relative_path(weight)
        for theirs, mine in _HUB_TO_OURS:
            path = path.replace(theirs, mine)
        ours[path].assign(weight.numpy())
        copied += 1
    assert copied == len(ours), f"copied {copied} of {len(ours)} weights"
    return copied


def randomize(layer, seed=0):
    """Give every weight random values (so norms and biases matter too)."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32"))
