"""benchmarks/encoder_throughput.py: the products-only floor of a step."""

import re

import pytest
from hlo_utils import gradient_hlo

pytestmark = pytest.mark.tf_only(reason="the benchmark times TensorFlow models")

TINY = dict(hidden=8, heads=2, intermediate=16, length=4, batch=3, layers=2)


@pytest.fixture
def benchmark(load_benchmark):
    return load_benchmark("encoder_throughput")


def test_products_flops_equal_the_model_flops_formula_less_input_gradient(benchmark):
    # Two derivations: the per-token formula of the model FLOPs, less the
    # three (B T, E) x (E, E) products of the input's gradient, and the sum
    # over the products the floor actually computes.
    for size in (TINY, benchmark.SIZES["a"], benchmark.SIZES["b"]):
        tokens = size["batch"] * size["length"]
        input_gradient = 3 * 2 * tokens * size["hidden"] ** 2
        _, flops = benchmark.products_unit(size, jit=False)
        assert flops == benchmark.flops_per_token(size) * tokens - input_gradient


@pytest.mark.parametrize("jit", [False, True])
def test_products_unit_runs(benchmark, jit):
    unit, _ = benchmark.products_unit(TINY, jit=jit)
    # The last product: the gradient of V in `P V`, (B * H, D, T).
    depth = TINY["hidden"] // TINY["heads"]
    assert unit().shape == (TINY["batch"] * TINY["heads"], depth, TINY["length"])


def test_compiled_products_are_all_computed(benchmark):
    # Every product survives XLA: distinct operands per layer (identical
    # products would be merged) and whole outputs (no slice pushed into a dot).
    unit, _ = benchmark.products_unit(TINY, jit=True)
    hlo = unit.step.experimental_get_compiler_ir()(stage="optimized_hlo")
    per_layer = 6 * 3 + 2 * 3  # parameter and attention products, fwd + bwd
    assert count_dots(hlo) == TINY["layers"] * per_layer - 3


@pytest.mark.parametrize("stack", ["ours", "keras_hub", "keras_mha"])
def test_compiled_training_steps_compute_as_many_products_as_the_floor(
    benchmark, stack
):
    # The floor leaves out the first layer's Q/K/V input gradient because
    # XLA drops it from every stack's step: the compiled step of each model
    # holds exactly the floor's number of dots.
    import tensorflow as tf

    model = {
        "ours": lambda: benchmark.ours_stack(TINY, "auto"),
        "keras_hub": lambda: benchmark.keras_hub_stack(TINY),
        "keras_mha": lambda: benchmark.keras_mha_stack(TINY),
    }[stack]()
    x = tf.random.normal((TINY["batch"], TINY["length"], TINY["hidden"]), seed=0)
    hlo = gradient_hlo(lambda x: tf.reduce_mean(tf.square(model(x, training=True))),
                       x, model.trainable_variables)
    per_layer = 6 * 3 + 2 * 3
    assert count_dots(hlo) == TINY["layers"] * per_layer - 3


def count_dots(hlo):
    return len(re.findall(r" dot\(", hlo))
