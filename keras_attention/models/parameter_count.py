"""Parameter counts of a builder's model without allocating its weights."""

import keras
from keras.src.backend.common import global_state


def count_parameters(builder, **arguments):
    """The number of weights `builder(**arguments)` would have.

    Builds the model with deferred variable initialization: the layers and
    shapes are real, but no weight values are drawn or stored, so a
    200M-parameter configuration is counted in well under a second and a
    few megabytes. The deferred variables are dropped afterwards so that no
    later Keras call initializes them.

    Keyword arguments after `builder` are passed to it unchanged.

    Args:
        builder: a model builder, e.g. `keras_attention.models.causal_lm`.

    Returns:
        The parameter count, an int (what `model.count_params()` returns
        for the same arguments).

    Example:

    ```python
    import keras_attention as ka
    ka.models.count_parameters(
        ka.models.causal_lm, vocabulary_size=100, sequence_length=16,
        num_layers=1, hidden_dim=8, num_heads=2, intermediate_dim=16)
    ```
    """
    def pending():
        return list(global_state.get_global_attribute("uninitialized_variables") or [])

    before = {id(v) for v in pending()}
    try:
        with keras.StatelessScope(initialize_variables=False):
            model = builder(**arguments)
        return model.count_params()
    finally:
        global_state.set_global_attribute(
            "uninitialized_variables", [v for v in pending() if id(v) in before]
        )
