"""One copy of an initializer per weight."""

import keras


def clone_initializer(initializer, seed_offset=0):
    """A fresh copy of `initializer`, so that weights do not share one.

    A Keras initializer instance is rebuilt from its config: an unseeded
    one then draws its own values, and a seeded one gets its seed shifted by
    `seed_offset` (so reproducible runs still give same-shaped weights
    different values when the offsets differ). A plain function, which
    Keras layers also accept as an initializer, holds no state and is
    returned as it is.

    Example:

    ```python
    import keras
    from keras_attention.utils.initializers import clone_initializer
    base = keras.initializers.GlorotUniform(seed=1)
    clone_initializer(base, seed_offset=2).seed  # 3
    ```
    """
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    config = initializer.get_config()
    if seed_offset and isinstance(config.get("seed"), int):
        config["seed"] = config["seed"] + seed_offset
    return initializer.__class__.from_config(config)
