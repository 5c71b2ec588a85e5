"""keras-tuner HyperModel of `keras_attention.models.transformer_classifier`."""

import keras

from keras_attention.models import transformer_classifier
from keras_attention.models.transformer_classifier import POOLINGS
from keras_attention.tuning.search_space import TransformerSearchSpace
from keras_attention.tuning.search_space import check_name_choices
from keras_attention.tuning.search_space import choose
from keras_attention.tuning.search_space import transformer_optimizer
from keras_attention.utils.validation import check_positive_int


class TransformerClassifierHyperModel(TransformerSearchSpace):
    """Searches Transformer sequence classifiers (`transformer_classifier`).

    Each trial builds `transformer_classifier(vocabulary_size,
    sequence_length, num_classes, ...)` with sampled depth, heads, key size
    (`hidden_dim = num_heads * key_dim`), feed-forward width
    (`intermediate_dim = intermediate_multiplier * hidden_dim`), dropout,
    pre/post-LN, attention kernel, absolute positions and in-attention
    positional scheme, and pooling, and compiles it with Adam and
    `TransformerSchedule` (peak `learning_rate` after `warmup_steps`),
    sparse categorical cross-entropy on logits and accuracy. Use it with any
    keras-tuner tuner; the objective `"val_accuracy"` or `"val_loss"`
    needs validation data in `search`.

    Each search-space argument is one value (fixed) or a list of choices;
    `dropout` and `learning_rate` take a number or a `(low, high)` range.

    Args:
        vocabulary_size: int, number of token ids (0 is padding).
        sequence_length: int, maximum sequence length.
        num_classes: int, number of classes.
        num_layers: encoder blocks.
        num_heads: attention heads.
        key_dim: size of each head.
        intermediate_multiplier: feed-forward width over `hidden_dim`.
        dropout: dropout rate, or a `(low, high)` range.
        norm_first: pre-LN (`True`) and/or post-LN (`False`).
        attention_kernel: attention kernel names for the blocks' attention: `"dot_product"`,
            `"performer"`, `"linformer"`, `"local"`, `"big_bird"`.
            Position schemes a kernel cannot take (`"relative"`,
            `"alibi"` with `"performer"` and `"linformer"`) are left out
            of its trials: the scheme is then the conditional
            hyper-parameter `position_scheme_performer_linformer`.
        position_encoding: `"learned"` and/or `"sinusoidal"`.
        position_scheme: `None`/`"none"`, `"rotary"`, `"relative"`,
            `"alibi"`.
        learning_rate: peak learning rate, or a `(low, high)` range
            (sampled on a log scale).
        warmup_steps: warm-up steps of the schedule.
        pooling: `"cls"`, `"mean"` and/or `"attention"`.
        attention_kernel_options: `None` (each kernel's defaults), or a
            dict from searched kernels to their layer's options, each one
            value or a list of choices, e.g. `{"local": {"window_size":
            [16, 32]}, "performer": {"num_random_features": [64, 256]}}`.
            Each option is the hyper-parameter `<kernel>_<option>`
            (`local_window_size`), active only in that kernel's trials.
            `sequence_length` is the `sequence_length` option of
            `"linformer"` and `"big_bird"` unless given here.
        name: optional name of the HyperModel.
        tunable: whether its hyper-parameters are tuned.

    Raises:
        ValueError: for an invalid size, choice or range, or kernel options
            that are not searched or that the kernel's layer refuses.
        TypeError: on `attention_kernel_options` that are not dicts of
            option choices.

    Example:

    ```python
    import keras_tuner
    from keras_attention.tuning import TransformerClassifierHyperModel
    hypermodel = TransformerClassifierHyperModel(
        vocabulary_size=50, sequence_length=16, num_classes=3,
        num_layers=1, num_heads=2, key_dim=[4, 8])
    model = hypermodel.build(keras_tuner.HyperParameters())
    model.arguments["hidden_dim"]  # 8: 2 heads x key_dim 4 (first choice)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need".
        Li et al., 2018, "Hyperband: A Novel Bandit-Based Approach to
        Hyperparameter Optimization".
    """

    builder = staticmethod(transformer_classifier)

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        num_classes,
        num_layers=(1, 2, 4),
        num_heads=(2, 4, 8),
        key_dim=(16, 32, 64),
        intermediate_multiplier=(2, 4),
        dropout=(0.0, 0.3),
        norm_first=(False, True),
        attention_kernel=("dot_product", "performer", "linformer", "local", "big_bird"),
        position_encoding=("learned", "sinusoidal"),
        position_scheme=(None, "rotary", "relative", "alibi"),
        learning_rate=(1e-4, 3e-3),
        warmup_steps=(100, 1000, 4000),
        pooling=("cls", "mean", "attention"),
        attention_kernel_options=None,
        name=None,
        tunable=True,
    ):
        super().__init__(
            num_layers=num_layers,
            num_heads=num_heads,
            key_dim=key_dim,
            intermediate_multiplier=intermediate_multiplier,
            dropout=dropout,
            norm_first=norm_first,
            attention_kernel=attention_kernel,
            position_encoding=position_encoding,
            position_scheme=position_scheme,
            learning_rate=learning_rate,
            warmup_steps=warmup_steps,
            attention_kernel_options=attention_kernel_options,
            sequence_length=sequence_length,
            name=name,
            tunable=tunable,
        )
        self.vocabulary_size = check_positive_int(vocabulary_size, "vocabulary_size")
        self.sequence_length = check_positive_int(sequence_length, "sequence_length")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.pooling = check_name_choices(pooling, "pooling", POOLINGS)

    def build(self, hp):
        """A compiled `transformer_classifier` for the hyper-parameters `hp`."""
        arguments, learning_rate, warmup_steps = self.transformer_arguments(hp)
        model = transformer_classifier(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            num_classes=self.num_classes,
            pooling=choose(hp, "pooling", self.pooling),
            **arguments,
        )
        model.compile(
            optimizer=transformer_optimizer(arguments["hidden_dim"], learning_rate, warmup_steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        return model
