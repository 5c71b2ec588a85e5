"""keras-tuner HyperModel of `keras_attention.models.transformer_translator`."""

from keras_attention.models import transformer_translator
from keras_attention.models.model_parts import CAUSAL_DECODING_KERNELS
from keras_attention.models.model_parts import kernel_position_schemes
from keras_attention.training import MaskedAccuracy
from keras_attention.training import MaskedSparseCategoricalCrossentropy
from keras_attention.tuning.search_space import NONE
from keras_attention.tuning.search_space import TransformerSearchSpace
from keras_attention.tuning.search_space import check_kernel_option_choices
from keras_attention.tuning.search_space import check_name_choices
from keras_attention.tuning.search_space import choose
from keras_attention.tuning.search_space import choose_kernel_options
from keras_attention.tuning.search_space import transformer_optimizer
from keras_attention.utils.validation import check_positive_int
from keras_attention.utils.validation import check_rate


class TransformerTranslatorHyperModel(TransformerSearchSpace):
    """Searches encoder-decoder Transformers (`transformer_translator`).

    Each trial builds `transformer_translator(vocabulary_size,
    sequence_length, target_vocabulary_size=..., ...)` with sampled depth
    (encoder and decoder alike), heads, key size (`hidden_dim = num_heads *
    key_dim`), feed-forward width (`intermediate_dim =
    intermediate_multiplier * hidden_dim`), dropout, pre/post-LN, encoder
    and decoder attention kernels and their options, absolute positions and
    in-attention positional scheme, and
    compiles it as in the paper: Adam (`beta_2=0.98`, `epsilon=1e-9`) with
    `TransformerSchedule` peaking at `learning_rate` after `warmup_steps`,
    label-smoothed `MaskedSparseCategoricalCrossentropy` and
    `MaskedAccuracy` (padding id 0 ignored). Train it on
    `({"source_ids", "target_ids"}, next-token labels)` batches; the
    objective `"val_loss"` or `"val_masked_accuracy"` needs validation
    data in `search`.

    Each search-space argument is one value (fixed) or a list of choices;
    `dropout` and `learning_rate` take a number or a `(low, high)` range.

    Args:
        vocabulary_size: int, number of source token ids (0 is padding).
        sequence_length: int, maximum source and target length.
        target_vocabulary_size: int or `None` (the source vocabulary).
        num_layers: encoder (and decoder) blocks.
        num_heads: attention heads.
        key_dim: size of each head.
        intermediate_multiplier: feed-forward width over `hidden_dim`.
        dropout: dropout rate, or a `(low, high)` range.
        norm_first: pre-LN (`True`) and/or post-LN (`False`).
        attention_kernel: attention kernel names for the encoder's
            self-attention (the decoder stays `"dot_product"` for cached
            decoding): `"dot_product"`, `"performer"`, `"linformer"`,
            `"local"`, `"big_bird"`.
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
        label_smoothing: float in `[0, 1)` (0.1 in the paper), not tuned.
        attention_kernel_options: `None` (each kernel's defaults), or a
            dict from searched encoder kernels to their layer's options,
            each one value or a list of choices, e.g. `{"local": {"window_size":
            [16, 32]}, "performer": {"num_random_features": [64, 256]}}`.
            Each option is the hyper-parameter `<kernel>_<option>`
            (`local_window_size`), active only in that kernel's trials.
            `sequence_length` is the `sequence_length` option of
            `"linformer"` and `"big_bird"` unless given here.
        decoder_attention_kernel: kernel names for the decoder's causal
            self-attention, among those with cached decoding:
            `"dot_product"` (the default, fixed), `"performer"`, `"local"`,
            `"big_bird"`; the cross-attention stays exact. Each must take
            every `position_scheme` searched (`"performer"`: `None` or
            `"rotary"` only).
        decoder_attention_kernel_options: as `attention_kernel_options`,
            for the decoder kernels; the hyper-parameters are
            `decoder_<kernel>_<option>`, conditional on
            `decoder_attention_kernel`.
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
    from keras_attention.tuning import TransformerTranslatorHyperModel
    hypermodel = TransformerTranslatorHyperModel(
        vocabulary_size=40, sequence_length=12, num_layers=1, num_heads=2,
        key_dim=4, position_scheme=["none", "rotary"])
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    hp.values["position_scheme"], model.arguments["position_scheme"]
    # ('none', None)
    ```

    References:
        Vaswani et al., 2017, "Attention Is All You Need", sections 3, 5.3
        and 5.4.
    """

    builder = staticmethod(transformer_translator)

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        target_vocabulary_size=None,
        num_layers=(1, 2, 4, 6),
        num_heads=(4, 8),
        key_dim=(16, 32, 64),
        intermediate_multiplier=(2, 4),
        dropout=(0.0, 0.3),
        norm_first=(False, True),
        attention_kernel=("dot_product", "performer", "linformer", "local", "big_bird"),
        position_encoding=("sinusoidal", "learned"),
        position_scheme=(None, "rotary", "relative", "alibi"),
        learning_rate=(1e-4, 2e-3),
        warmup_steps=(400, 1000, 4000),
        label_smoothing=0.1,
        attention_kernel_options=None,
        decoder_attention_kernel="dot_product",
        decoder_attention_kernel_options=None,
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
        self.target_vocabulary_size = check_positive_int(
            target_vocabulary_size, "target_vocabulary_size", allow_none=True
        )
        self.label_smoothing = check_rate(label_smoothing, "label_smoothing")
        self.decoder_attention_kernel = check_name_choices(
            decoder_attention_kernel, "decoder_attention_kernel", CAUSAL_DECODING_KERNELS
        )
        for kernel in self.decoder_attention_kernel:
            # The scheme is drawn for the encoder's kernel: a decoder kernel
            # must take every scheme searched.
            allowed = kernel_position_schemes(kernel)
            refused = [s for s in self.position_scheme if (None if s == NONE else s)
                       not in allowed]
            if refused:
                raise ValueError(
                    "Received incompatible arguments `decoder_attention_kernel` and "
                    f"`position_scheme`: the {kernel!r} kernel takes no additive "
                    f"attention bias, so not the schemes {refused}; expected "
                    f"position schemes among {list(allowed)}. Received: "
                    f"decoder_attention_kernel={decoder_attention_kernel!r}, "
                    f"position_scheme={position_scheme!r}"
                )
        self._decoder_kernel_options = check_kernel_option_choices(
            decoder_attention_kernel_options, self.decoder_attention_kernel,
            self.sequence_length, name="decoder_attention_kernel_options",
        )

    def build(self, hp):
        """A compiled `transformer_translator` for the hyper-parameters `hp`."""
        arguments, learning_rate, warmup_steps = self.transformer_arguments(hp)
        decoder_kernel = choose(hp, "decoder_attention_kernel", self.decoder_attention_kernel)
        arguments["decoder_attention_kernel"] = decoder_kernel
        arguments["decoder_attention_kernel_options"] = choose_kernel_options(
            hp, "decoder_attention_kernel", decoder_kernel, self._decoder_kernel_options,
            self.sequence_length, prefix="decoder_",
        )
        model = transformer_translator(
            vocabulary_size=self.vocabulary_size,
            sequence_length=self.sequence_length,
            target_vocabulary_size=self.target_vocabulary_size,
            **arguments,
        )
        model.compile(
            optimizer=transformer_optimizer(arguments["hidden_dim"], learning_rate, warmup_steps),
            loss=MaskedSparseCategoricalCrossentropy(label_smoothing=self.label_smoothing),
            metrics=[MaskedAccuracy()],
        )
        return model
