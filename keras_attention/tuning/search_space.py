"""Search-space arguments of the HyperModels and the Transformer space they share.

Every search-space argument of a HyperModel is either one value (fixed, but
still recorded as a hyper-parameter so trials show it) or a list of
choices (`hp.Choice`); the continuous ones (`dropout`, `learning_rate`)
take a `(low, high)` tuple instead of a list (`hp.Float`, logarithmic for
the learning rate). keras-tuner choices cannot hold `None`, so a "no
positional scheme" choice is spelled `"none"` in the search space and
passed as `None` to the builders.

Attention kernels and positional schemes depend on each other: a kernel
that takes no additive attention bias (`"performer"`) cannot use the
`"relative"` or `"alibi"` schemes. When the kernels searched accept
different schemes, the scheme is a conditional hyper-parameter of the
kernel: `position_scheme` for the kernels that take every scheme searched,
`position_scheme_<kernel>` (a narrower choice) for the others, so no trial
builds an impossible model.

Attention-kernel options are searched the same way: `attention_kernel_options`
maps a searched kernel to its layer's constructor options, each one value or
a list of choices (`{"local": {"window_size": [16, 32]}}`). Each becomes the
hyper-parameter `<kernel>_<option>` (`local_window_size`), conditional on
`attention_kernel` being that kernel, so a trial only draws (and keras-tuner
only shows as active) the options of the kernel it uses. Linformer's
projections and BigBird's block pattern are built for a longest length: the
HyperModels pass their `sequence_length` as that kernel option (so a
translator trial with BigBird exports a serving graph that takes sources of
any length).
"""

import inspect
import math
import numbers

import keras
import keras_tuner

from keras_attention.layers.transformer import block_components
from keras_attention.models import model_parts
from keras_attention.models.model_parts import POSITION_ENCODINGS
from keras_attention.training import TransformerSchedule

NONE = "none"


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _invalid(name, expected, value):
    return ValueError(
        f"Received an invalid value for argument `{name}`, expected {expected}. "
        f"Received: {name}={value!r}"
    )


def check_choices(value, name, expected, is_valid):
    """One value or a non-empty list of them, each passing `is_valid`.

    Returns:
        A tuple of the (distinct, ordered) choices.
    """
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values or not all(is_valid(v) for v in values):
        raise _invalid(name, f"{expected}, or a non-empty list of them", value)
    return tuple(dict.fromkeys(values))


def check_int_choices(value, name):
    """Positive integers."""
    return check_choices(value, name, "a positive integer", lambda v: _is_int(v) and v > 0)


def check_name_choices(value, name, allowed):
    """Names out of `allowed`."""
    shown = sorted(str(a) for a in allowed)
    return check_choices(value, name, f"one of {shown}", lambda v: v in allowed)


def _is_option_value(value):
    """A value keras-tuner's `hp.Choice` can hold."""
    return isinstance(value, (bool, str)) or _is_real(value)


def check_kernel_option_choices(value, kernels, sequence_length=None,
                                name="attention_kernel_options"):
    """Per-kernel option choices: `{kernel: {option: value or [choices]}}`.

    Every kernel must be one of the searched `kernels`; every option must be
    one its layer takes, and every choice a value the layer accepts (checked
    with the other options at their first choice and `sequence_length` as
    the kernel's own where it takes one (`model_parts.with_sequence_length`),
    by building the layer as the blocks do).
    Errors name the argument `name`.

    Returns:
        `{kernel: {option: tuple of choices}}` for every searched kernel
        (`{}` for a kernel without options).

    Raises:
        TypeError: if `value` or a kernel's entry is not a dict with string
            keys.
        ValueError: on a kernel that is not searched, a choice list that is
            empty or mixes types, a value keras-tuner cannot hold, or an
            option the kernel's layer refuses.
    """
    value = {} if value is None else value
    kernel_argument = name[: -len("_options")]
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(
            f"Received an invalid value for argument `{name}`, "
            "expected None or a dict mapping searched attention kernels to dicts "
            "of their options' choices. Received: "
            f"{name}={value!r} of type {type(value).__name__}"
        )
    unknown = [k for k in value if k not in kernels]
    if unknown:
        raise _invalid(
            name,
            f"keys among the searched {kernel_argument} choices {list(kernels)} "
            f"(not {unknown})",
            value,
        )
    space = {}
    for kernel in kernels:
        given = value.get(kernel, {})
        entry = f"{name}[{kernel!r}]"
        if not isinstance(given, dict) or not all(isinstance(k, str) for k in given):
            raise TypeError(
                f"Received an invalid value for argument `{entry}`, expected a "
                "dict of option names to one value or a list of choices. "
                f"Received: {entry}={given!r} of type {type(given).__name__}"
            )
        choices = {}
        for option, option_value in given.items():
            option_name = f"{entry}[{option!r}]"
            values = check_choices(
                option_value, option_name, "a number, string or bool",
                _is_option_value,
            )
            if len({type(v) for v in values}) > 1:
                raise _invalid(option_name, "choices of one type", option_value)
            choices[option] = values
        first = model_parts.with_sequence_length(
            kernel, {o: c[0] for o, c in choices.items()}, sequence_length
        ) or {}
        trials = [first] + [
            {**first, option: choice}
            for option, values in choices.items() for choice in values[1:]
        ]
        for trial in trials:
            block_components.check_attention_kernel_options(trial, kernel, name)
        space[kernel] = choices
    return space


def choose_kernel_options(hp, parent, kernel, option_choices, sequence_length, prefix=""):
    """The options of `kernel` (chosen by the hyper-parameter `parent`), or
    `None`. Every kernel's searched options are registered as
    `<prefix><kernel>_<option>`, each conditional on `parent` being its
    kernel, so every trial sees the same space; `sequence_length` is added
    as the kernel's own where it takes one, not searched."""
    chosen = {}
    for k, choices in option_choices.items():
        with hp.conditional_scope(parent, [k]):
            values = {o: choose(hp, f"{prefix}{k}_{o}", c) for o, c in choices.items()}
        if k == kernel:
            chosen = values
    return model_parts.with_sequence_length(kernel, chosen, sequence_length)


def check_range(value, name, low, high, high_inclusive=False, positive=False):
    """A number, or a `(low, high)` tuple with `low < high`, within bounds.

    Returns:
        The number, or the tuple `(low, high)`.
    """
    def ok(v):
        if not _is_real(v) or not math.isfinite(v):  # NaN fails no comparison
            return False
        if v < low or (v >= high if not high_inclusive else v > high):
            return False
        return not positive or v > 0

    upper = "]" if high_inclusive else ")"
    expected = (
        f"a number in [{low}, {high}{upper}{' above 0' if positive else ''}, or a "
        "(low, high) tuple of them with low < high"
    )
    if isinstance(value, tuple):
        if len(value) != 2 or not all(ok(v) for v in value) or not value[0] < value[1]:
            raise _invalid(name, expected, value)
        return (float(value[0]), float(value[1]))
    if not ok(value):
        raise _invalid(name, expected, value)
    return float(value)


def choose(hp, name, choices):
    """`hp.Choice` over `choices` (`hp.Boolean` for both bools), or `hp.Fixed`."""
    if len(choices) == 1:
        return hp.Fixed(name, choices[0])
    if all(isinstance(c, bool) for c in choices):
        return bool(hp.Boolean(name, default=choices[0]))
    return hp.Choice(name, list(choices))


def choose_float(hp, name, value, sampling="linear"):
    """`hp.Float` over a `(low, high)` range, or `hp.Fixed` for a number."""
    if isinstance(value, tuple):
        return hp.Float(name, value[0], value[1], sampling=sampling)
    return hp.Fixed(name, value)


def transformer_optimizer(hidden_dim, learning_rate, warmup_steps):
    """Adam with `TransformerSchedule` peaking at `learning_rate`.

    The schedule peaks at `scale * (hidden_dim * warmup_steps) ** -0.5`, so
    `scale = learning_rate * (hidden_dim * warmup_steps) ** 0.5`; Adam uses
    the paper's `beta_2=0.98, epsilon=1e-9`.
    """
    scale = learning_rate * float(hidden_dim * warmup_steps) ** 0.5
    schedule = TransformerSchedule(hidden_dim, warmup_steps=warmup_steps, scale=scale)
    return keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9)


class TransformerSearchSpace(keras_tuner.HyperModel):
    """The Transformer hyper-parameters shared by the classifier and translator.

    Subclasses set `builder` (a `keras_attention.models` function) and
    implement `build(hp)` with `self.transformer_arguments(hp)`.
    """

    builder = None

    def __init__(
        self,
        num_layers,
        num_heads,
        key_dim,
        intermediate_multiplier,
        dropout,
        norm_first,
        attention_kernel,
        position_encoding,
        position_scheme,
        learning_rate,
        warmup_steps,
        attention_kernel_options=None,
        sequence_length=None,
        name=None,
        tunable=True,
    ):
        super().__init__(name=name, tunable=tunable)
        self.num_layers = check_int_choices(num_layers, "num_layers")
        self.num_heads = check_int_choices(num_heads, "num_heads")
        self.key_dim = check_int_choices(key_dim, "key_dim")
        self.intermediate_multiplier = check_int_choices(
            intermediate_multiplier, "intermediate_multiplier"
        )
        self.dropout = check_range(dropout, "dropout", 0.0, 1.0)
        self.norm_first = check_choices(
            norm_first, "norm_first", "a bool", lambda v: isinstance(v, bool)
        )
        self.attention_kernel = check_name_choices(
            attention_kernel, "attention_kernel", tuple(block_components.ATTENTION_KERNELS)
        )
        takes_kernel = "attention_kernel" in inspect.signature(self.builder).parameters
        if not takes_kernel and self.attention_kernel != ("dot_product",):
            raise _invalid(
                "attention_kernel",
                f"'dot_product' (the `{self.builder.__name__}` builder has no "
                "`attention_kernel` argument)",
                attention_kernel,
            )
        self._sequence_length = sequence_length
        if takes_kernel:
            # With the longest length known, Linformer's required option is too.
            usable = tuple(
                k for k in block_components.ATTENTION_KERNELS
                if k in model_parts.builder_attention_kernels()
                or (sequence_length is not None
                    and model_parts.kernel_takes(k, "sequence_length"))
            )
            check_name_choices(attention_kernel, "attention_kernel", usable)
        self._takes_kernel = takes_kernel
        if not takes_kernel and attention_kernel_options:
            raise _invalid(
                "attention_kernel_options",
                f"None (the `{self.builder.__name__}` builder has no "
                "`attention_kernel_options` argument)",
                attention_kernel_options,
            )
        self._kernel_options = check_kernel_option_choices(
            attention_kernel_options, self.attention_kernel, sequence_length
        )
        self.position_encoding = check_name_choices(
            position_encoding, "position_encoding", POSITION_ENCODINGS
        )
        schemes = tuple(NONE if s is None else s for s in block_components.POSITION_SCHEMES)
        self.position_scheme = tuple(
            NONE if s is None else s
            for s in check_name_choices(
                position_scheme, "position_scheme", (*schemes, None)
            )
        )
        self.learning_rate = check_range(
            learning_rate, "learning_rate", 0.0, 1.0, high_inclusive=True, positive=True
        )
        self.warmup_steps = check_int_choices(warmup_steps, "warmup_steps")
        self._kernel_schemes = {}
        for kernel in self.attention_kernel:
            allowed = model_parts.kernel_position_schemes(kernel)
            schemes = tuple(s for s in self.position_scheme if (None if s == NONE else s) in allowed)
            if not schemes:
                raise ValueError(
                    "Received incompatible arguments `attention_kernel` and "
                    f"`position_scheme`: the {kernel!r} kernel takes none of the "
                    f"position schemes searched, expected at least one of {list(allowed)}. "
                    f"Received: attention_kernel={attention_kernel!r}, "
                    f"position_scheme={position_scheme!r}"
                )
            self._kernel_schemes[kernel] = schemes

    def _choose_position_scheme(self, hp, kernel):
        """The position scheme, conditional on the kernel where they differ."""
        groups = {}  # schemes -> the kernels that take exactly these
        for k, schemes in self._kernel_schemes.items():
            groups.setdefault(schemes, []).append(k)
        if len(groups) == 1:
            return choose(hp, "position_scheme", next(iter(groups)))
        chosen = None
        for schemes, kernels in groups.items():
            name = "position_scheme"
            if schemes != self.position_scheme:
                name = "position_scheme_" + "_".join(kernels)
            with hp.conditional_scope("attention_kernel", kernels):
                value = choose(hp, name, schemes)
            if kernel in kernels:
                chosen = value
        return chosen

    def transformer_arguments(self, hp):
        """Builder arguments and optimizer settings sampled from `hp`.

        Returns:
            `(arguments, learning_rate, warmup_steps)`: the builder keyword
            arguments (`hidden_dim = num_heads * key_dim`,
            `intermediate_dim = intermediate_multiplier * hidden_dim`), the
            peak learning rate and the warm-up steps.
        """
        num_heads = choose(hp, "num_heads", self.num_heads)
        hidden_dim = num_heads * choose(hp, "key_dim", self.key_dim)
        arguments = dict(
            num_layers=choose(hp, "num_layers", self.num_layers),
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            intermediate_dim=hidden_dim
            * choose(hp, "intermediate_multiplier", self.intermediate_multiplier),
            dropout=choose_float(hp, "dropout", self.dropout),
            norm_first=choose(hp, "norm_first", self.norm_first),
            position_encoding=choose(hp, "position_encoding", self.position_encoding),
        )
        kernel = choose(hp, "attention_kernel", self.attention_kernel)
        scheme = self._choose_position_scheme(hp, kernel)
        arguments["position_scheme"] = None if scheme == NONE else scheme
        options = choose_kernel_options(
            hp, "attention_kernel", kernel, self._kernel_options, self._sequence_length
        )
        if self._takes_kernel:
            arguments["attention_kernel"] = kernel
            arguments["attention_kernel_options"] = options
        learning_rate = choose_float(hp, "learning_rate", self.learning_rate, "log")
        warmup_steps = choose(hp, "warmup_steps", self.warmup_steps)
        return arguments, learning_rate, warmup_steps
