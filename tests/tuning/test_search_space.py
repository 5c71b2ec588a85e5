"""The shared search-space helpers and the attention-kernel plumbing."""

import keras_tuner
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
    assert space["attention_kernel"].values == ["dot_product", "performer", "local", "big_bird"]
    # Performer takes no attention bias: its trials choose among the schemes
    # it can use, under their own name, active only for it.
    assert space["position_scheme"].values == ["none", "relative"]
    assert [c.values for c in space["position_scheme"].conditions] == [
        ["dot_product", "local", "big_bird"]]
    assert space["position_scheme_performer"].value == "none"  # fixed: one choice
    assert [c.values for c in space["position_scheme_performer"].conditions] == [["performer"]]
    for kernel, scheme in [("performer", None), ("big_bird", "relative")]:
        # What an oracle does: a value for every hyper-parameter of the space.
        hp.values.update(attention_kernel=kernel, position_scheme="relative",
                         position_scheme_performer="none")
        model = hypermodel.build(hp)
        assert (model.arguments["attention_kernel"], model.arguments["position_scheme"]) == (
            kernel, scheme)


def test_kernels_the_builders_cannot_use():
    with pytest.raises(ValueError, match=r"argument `attention_kernel`, expected one of "
                       r"\['big_bird', 'dot_product', 'local', 'performer'\], or a non-empty "
                       r"list of them\. Received: attention_kernel=\['performer', 'linformer'\]"):
        _TakesKernel(attention_kernel=["performer", "linformer"], **SPACE)
    with pytest.raises(ValueError, match=r"incompatible arguments `attention_kernel` and "
                       r"`position_scheme`: the 'performer' kernel takes none of the position "
                       r"schemes searched"):
        _TakesKernel(attention_kernel="performer", **{**SPACE, "position_scheme": "alibi"})
