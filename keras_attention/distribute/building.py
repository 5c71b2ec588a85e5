"""Building and compiling models inside a strategy's scope."""

import keras
import tensorflow as tf


def _clone_in_scope(obj):
    """A fresh copy of an optimizer or metric, created in the current scope.

    Optimizers and metrics own variables (and a Keras TF optimizer remembers
    the strategy it was created under), so instances made outside the scope
    would live on one device only; rebuilding them from their config puts
    their variables under the strategy.
    """
    if isinstance(obj, keras.optimizers.Optimizer):
        return keras.optimizers.deserialize(keras.optimizers.serialize(obj))
    if isinstance(obj, keras.metrics.Metric):
        return keras.metrics.deserialize(keras.metrics.serialize(obj))
    return obj


def _in_scope(value):
    if isinstance(value, (list, tuple)):
        return type(value)(_in_scope(v) for v in value)
    if isinstance(value, dict):
        return {k: _in_scope(v) for k, v in value.items()}
    return _clone_in_scope(value)


def build_and_compile(strategy, build_fn, compile_kwargs=None):
    """Build a model with `build_fn()` and compile it inside `strategy.scope()`.

    Variables of the model, its optimizer and its metrics must be created
    under the strategy to be mirrored over its replicas. `compile_kwargs`
    may hold optimizer and metric objects created outside the scope: they
    are rebuilt from their configs inside it (an optimizer's learning-rate
    schedule, e.g. `TransformerSchedule`, is kept). It may also be a
    callable returning the dict, called inside the scope.

    Args:
        strategy: a `tf.distribute.Strategy` (e.g. from `get_strategy`).
        build_fn: callable with no arguments returning a `keras.Model`,
            e.g. `lambda: ka.models.transformer_translator(...)`.
        compile_kwargs: dict of `model.compile` arguments, a callable
            returning one, or `None` to leave the model uncompiled.

    Returns:
        The built (and compiled) `keras.Model`, its variables mirrored by
        `strategy`.

    Raises:
        ValueError: if `build_fn` does not return a `keras.Model` or
            `compile_kwargs` is not a dict, a callable or `None`.

    Example:

    ```python
    import keras
    from keras_attention.distribute import build_and_compile, get_strategy
    model = build_and_compile(
        get_strategy("default"),
        lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
        {"optimizer": keras.optimizers.Adam(1e-3), "loss": "mse"},
    )
    model.optimizer.learning_rate.numpy()  # 0.001
    ```
    """
    if not callable(build_fn):
        raise ValueError(
            "Received an invalid value for argument `build_fn`, expected a "
            f"callable returning a keras.Model. Received: build_fn={build_fn!r}"
        )
    if not (compile_kwargs is None or isinstance(compile_kwargs, dict) or callable(compile_kwargs)):
        raise ValueError(
            "Received an invalid value for argument `compile_kwargs`, expected "
            "a dict of `Model.compile` arguments, a callable returning one, "
            f"or None. Received: compile_kwargs={compile_kwargs!r}"
        )
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = build_fn()
        if not isinstance(model, keras.Model):
            raise ValueError(
                "Received an invalid value for argument `build_fn`, expected a "
                "callable returning a keras.Model. Received: build_fn() "
                f"returned {type(model).__name__}"
            )
        if compile_kwargs is not None:
            kwargs = compile_kwargs() if callable(compile_kwargs) else compile_kwargs
            model.compile(**_in_scope(dict(kwargs)))
    return model
