"""The shared search-space helpers and the attention-kernel plumbing."""

import keras_tuner
import numpy as np
import pytest

from keras_attention.layers.attention import MultiHeadAttention
from keras_attention.layers.transformer import block_components
from keras_attention.tuning import search_space
from keras_attention.tuning.search_space import TransformerSearchSpace

SPACE = dict(
    num_layers=1, num_heads=2, key_dim=4, intermediate_multiplier=2, dropout=0.1,
    norm_first=False, position_encoding="learned", position_scheme=None,
    learning_rate=1e-3, warmup_steps=10,
)


@pytest.fixture
def extra_kernel():
    block_components.register_attention_kernel("test_kernel", MultiHeadAttention)
    yield "test_kernel"
    block_components.ATTENTION_KERNELS.pop("test_kernel")


def _with_kernel(num_layers, hidden_dim, attention_kernel="dot_product", **kwargs):
    return {"attention_kernel": attention_kernel, "hidden_dim": hidden_dim}


def _without_kernel(num_layers, hidden_dim, **kwargs):
    return {"hidden_dim": hidden_dim}


class _Space(TransformerSearchSpace):
    def build(self, hp):
        return self.builder(**self.transformer_arguments(hp)[0])


class _TakesKernel(_Space):
    builder = staticmethod(_with_kernel)


class _NoKernel(_Space):
    builder = staticmethod(_without_kernel)


def test_kernel_choices_reach_a_builder_that_takes_them(extra_kernel):
    hypermodel = _TakesKernel(attention_kernel=["dot_product", extra_kernel], **SPACE)
    hp = keras_tuner.HyperParameters()
    assert hypermodel.build(hp)["attention_kernel"] == "dot_product"
    hp.values["attention_kernel"] = extra_kernel
    assert hypermodel.build(hp)["attention_kernel"] == extra_kernel


def test_kernel_choices_need_a_builder_that_takes_them(extra_kernel):
    with pytest.raises(
        ValueError,
        match=r"argument `attention_kernel`, expected 'dot_product' \(the `_without_kernel` "
        r"builder has no `attention_kernel` argument\)\. "
        r"Received: attention_kernel=\['dot_product', 'test_kernel'\]",
    ):
        _NoKernel(attention_kernel=["dot_product", extra_kernel], **SPACE)
    # The default kernel is recorded but not passed.
    hp = keras_tuner.HyperParameters()
    assert _NoKernel(attention_kernel="dot_product", **SPACE).build(hp) == {"hidden_dim": 8}
    assert hp.values["attention_kernel"] == "dot_product"


def test_choices_and_ranges():
    assert search_space.check_int_choices(3, "n") == (3,)
    assert search_space.check_int_choices([4, 2, 4], "n") == (4, 2)  # ordered, distinct
    with pytest.raises(ValueError, match=r"argument `n`, expected a positive integer, or a "
                       r"non-empty list of them\. Received: n=True"):
        search_space.check_int_choices(True, "n")
    assert search_space.check_range((0.1, 0.2), "p", 0.0, 1.0) == (0.1, 0.2)
    assert search_space.check_range(0, "p", 0.0, 1.0) == 0.0
    with pytest.raises(ValueError, match=r"argument `p`, expected a number in \[0.0, 1.0\), "
                       r"or a \(low, high\) tuple"):
        search_space.check_range([0.1, 0.2], "p", 0.0, 1.0)  # a list is not a range
    with pytest.raises(ValueError, match=r"Received: p=\(0.1, 0.2, 0.3\)"):
        search_space.check_range((0.1, 0.2, 0.3), "p", 0.0, 1.0)


def test_hyper_parameter_kinds():
    hp = keras_tuner.HyperParameters()
    assert search_space.choose(hp, "a", (5,)) == 5
    assert search_space.choose(hp, "b", ("x", "y")) == "x"
    assert search_space.choose(hp, "c", (True, False)) is True
    assert search_space.choose_float(hp, "d", (0.1, 0.5)) == 0.1
    assert search_space.choose_float(hp, "e", 0.25) == 0.25
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {"a": "Fixed", "b": "Choice", "c": "Boolean", "d": "Float", "e": "Fixed"}


def test_transformer_optimizer_peaks_at_the_learning_rate():
    optimizer = search_space.transformer_optimizer(64, 3e-3, 400)
    schedule = optimizer._learning_rate
    rates = [float(schedule(step)) for step in (0, 199, 399, 400, 1599)]
    assert max(rates) == pytest.approx(3e-3, rel=1e-5) == rates[2]
    # step^-0.5 decay after the peak: 4x the steps, half the rate.
    assert rates[4] == pytest.approx(rates[2] / 2, rel=1e-3)


def test_builders_offer_the_efficient_kernels():
    from keras_attention.tuning import TransformerClassifierHyperModel

    hypermodel = TransformerClassifierHyperModel(
        vocabulary_size=20, sequence_length=8, num_classes=2, num_layers=1, num_heads=2,
        key_dim=4, intermediate_multiplier=2, position_scheme=[None, "relative"])
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    assert hp.get("attention_kernel") == "dot_product"
    space = {h.name: h for h in hp.space}
    assert space["attention_kernel"].values == [
        "dot_product", "performer", "linformer", "local", "big_bird"]
    # Performer and Linformer take no attention bias: their trials choose
    # among the schemes they can use, under their own name, active only for
    # them.
    assert space["position_scheme"].values == ["none", "relative"]
    assert [c.values for c in space["position_scheme"].conditions] == [
        ["dot_product", "local", "big_bird"]]
    fixed = space["position_scheme_performer_linformer"]
    assert fixed.value == "none"  # fixed: one choice
    assert [c.values for c in fixed.conditions] == [["performer", "linformer"]]
    for kernel, scheme in [("performer", None), ("linformer", None), ("big_bird", "relative")]:
        # What an oracle does: a value for every hyper-parameter of the space.
        hp.values.update(attention_kernel=kernel, position_scheme="relative",
                         position_scheme_performer_linformer="none")
        model = hypermodel.build(hp)
        assert (model.arguments["attention_kernel"], model.arguments["position_scheme"]) == (
            kernel, scheme)
        # The HyperModel's length is the length option of Linformer and BigBird.
        expected = None if kernel == "performer" else {"sequence_length": 8}
        assert model.arguments["attention_kernel_options"] == expected


def _classifier_space(**overrides):
    from keras_attention.tuning import TransformerClassifierHyperModel

    space = dict(vocabulary_size=20, sequence_length=8, num_classes=2, num_layers=1,
                 num_heads=2, key_dim=4, intermediate_multiplier=2, position_scheme=None,
                 attention_kernel=["dot_product", "local", "performer", "linformer"],
                 attention_kernel_options={
                     "local": {"window_size": [2, 4]},
                     "performer": {"num_random_features": 8, "redraw_features": [False, True]},
                     "linformer": {"projection_dim": [2, 4]},
                 })
    space.update(overrides)
    return TransformerClassifierHyperModel(**space)


def test_kernel_options_are_hyper_parameters_of_their_kernel():
    hypermodel = _classifier_space()
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert model.arguments["attention_kernel_options"] is None  # dot_product
    space = {h.name: h for h in hp.space}
    assert space["local_window_size"].values == [2, 4]
    assert space["performer_num_random_features"].value == 8  # one value: fixed
    assert space["performer_redraw_features"].__class__.__name__ == "Boolean"
    assert space["linformer_projection_dim"].values == [2, 4]
    for name, kernel in [("local_window_size", "local"),
                         ("performer_num_random_features", "performer"),
                         ("performer_redraw_features", "performer"),
                         ("linformer_projection_dim", "linformer")]:
        assert [c.values for c in space[name].conditions] == [[kernel]]
        assert not hp.is_active(space[name])  # the default trial is dot_product
    trials = [
        ({"attention_kernel": "local", "local_window_size": 4}, "local",
         {"window_size": 4}),
        ({"attention_kernel": "performer", "performer_redraw_features": True}, "performer",
         {"num_random_features": 8, "redraw_features": True}),
        ({"attention_kernel": "linformer", "linformer_projection_dim": 4}, "linformer",
         {"sequence_length": 8, "projection_dim": 4}),
    ]
    oracle = {name: space[name].default for name in space}  # a value for every one
    for values, kernel, options in trials:
        hp.values.update({**oracle, **values})
        model = hypermodel.build(hp)
        assert model.arguments["attention_kernel_options"] == options
        layer = model.get_layer("encoder_block_0").self_attention
        assert type(layer).__name__.lower().startswith(kernel)
        for option, value in options.items():
            assert getattr(layer, option) == value
        model.fit(np.ones((4, 8), "int32"), np.zeros((4,), "int32"), epochs=1, verbose=0)


def test_a_given_length_option_is_kept():
    hypermodel = _classifier_space(
        attention_kernel="big_bird",
        attention_kernel_options={"big_bird": {"sequence_length": 16, "block_size": [2, 4]}})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert model.arguments["attention_kernel_options"] == {"sequence_length": 16, "block_size": 2}
    assert [h.name for h in hp.space if h.name.startswith("big_bird")] == [
        "big_bird_sequence_length", "big_bird_block_size"]


@pytest.mark.parametrize("options,error,message", [
    ({"big_bird": {"block_size": 2}}, ValueError,
     r"argument `attention_kernel_options`, expected keys among the searched "
     r"attention_kernel choices \['dot_product', 'local', 'performer', 'linformer'\] "
     r"\(not \['big_bird'\]\)"),
    ({"local": {"window": 2}}, ValueError,
     r"argument `attention_kernel_options` for attention_kernel='local' \(LocalAttention\): "
     r"Unrecognized keyword arguments passed to LocalAttention: \{'window': 2\}"),
    ({"local": {"window_size": [2, 0]}}, ValueError,
     r"for attention_kernel='local' \(LocalAttention\).*argument `window_size`, expected "
     r"a positive integer"),
    ({"local": {"window_size": []}}, ValueError,
     r"argument `attention_kernel_options\['local'\]\['window_size'\]`, expected a "
     r"number, string or bool, or a non-empty list of them"),
    ({"local": {"window_size": [2, "4"]}}, ValueError,
     r"argument `attention_kernel_options\['local'\]\['window_size'\]`, expected "
     r"choices of one type"),
    ({"local": {"window_size": None}}, ValueError,
     r"expected a number, string or bool, or a non-empty list of them"),
    ({"local": [("window_size", 2)]}, TypeError,
     r"argument `attention_kernel_options\['local'\]`, expected a dict of option names"),
    ([("local", {})], TypeError,
     r"argument `attention_kernel_options`, expected None or a dict mapping searched "
     r"attention kernels"),
])
def test_invalid_kernel_options(options, error, message):
    with pytest.raises(error, match=message):
        _classifier_space(attention_kernel_options=options)


def test_kernel_options_need_a_builder_that_takes_them():
    with pytest.raises(ValueError, match=r"argument `attention_kernel_options`, expected "
                       r"None \(the `_without_kernel` builder has no "
                       r"`attention_kernel_options` argument\)"):
        _NoKernel(attention_kernel="dot_product",
                  attention_kernel_options={"dot_product": {"attention_implementation": "full"}},
                  **SPACE)


def test_kernels_the_builders_cannot_use():
    with pytest.raises(ValueError, match=r"argument `attention_kernel`, expected one of "
                       r"\['big_bird', 'dot_product', 'local', 'performer'\], or a non-empty "
                       r"list of them\. Received: attention_kernel=\['performer', 'linformer'\]"):
        _TakesKernel(attention_kernel=["performer", "linformer"], **SPACE)
    with pytest.raises(ValueError, match=r"incompatible arguments `attention_kernel` and "
                       r"`position_scheme`: the 'performer' kernel takes none of the position "
                       r"schemes searched"):
        _TakesKernel(attention_kernel="performer", **{**SPACE, "position_scheme": "alibi"})


@pytest.mark.parametrize("bad", [float("nan"), (0.1, float("nan")), float("inf")])
def test_ranges_reject_nan_and_infinity(bad):
    # Every comparison with NaN is False, so NaN passed the bounds.
    with pytest.raises(ValueError, match="argument `p`, expected a number in"):
        search_space.check_range(bad, "p", 0.0, 1.0, high_inclusive=True)
