"""A functional `keras.Model` that serializes as its builder's arguments."""

import keras

# builder name -> function(**arguments) -> (inputs, outputs). Filled by the
# builder modules with `register_graph`.
_GRAPHS = {}


def register_graph(name):
    """Register a graph function under `name` (used by the model builders)."""

    def decorator(function):
        _GRAPHS[name] = function
        return function

    return decorator


@keras.saving.register_keras_serializable(package="keras_attention")
class BuilderModel(keras.Model):
    """A functional `keras.Model` rebuilt from its builder's arguments.

    The model builders of `keras_attention.models` return this class. It is
    an ordinary functional model (named inputs, `summary()`, `fit()`,
    layer access with `get_layer`), whose config is the builder name and
    its arguments instead of the layer graph. Rebuilding from the builder
    keeps weights tied on reload: the tied output projection of a language
    model reuses the embedding layer's table, which a plain functional
    config would duplicate into an untied copy.

    Only builders registered by `keras_attention.models` can be named, so
    `.keras` files load with `safe_mode=True` and no `custom_objects`.

    Args:
        builder: name of a registered builder, e.g. `"causal_lm"`.
        arguments: dict of the builder's arguments (JSON-serializable).

    Example:

    ```python
    import keras_attention as ka
    model = ka.models.causal_lm(vocabulary_size=20, sequence_length=8,
                                num_layers=1, hidden_dim=8, num_heads=2,
                                intermediate_dim=16)
    model.builder, model.arguments["hidden_dim"]  # ('causal_lm', 8)
    ```
    """

    def __init__(self, builder, arguments, **kwargs):
        if builder not in _GRAPHS:
            raise ValueError(
                "Received an invalid value for argument `builder`, expected "
                f"one of {sorted(_GRAPHS)}. Received: builder={builder!r}"
            )
        arguments = dict(arguments)
        inputs, outputs = _GRAPHS[builder](**arguments)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.builder = builder
        self._arguments = arguments

    @property
    def arguments(self):
        """A copy of the builder arguments this model was built with."""
        return dict(self._arguments)

    def get_config(self):
        return {
            "builder": self.builder,
            "arguments": dict(self._arguments),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)
