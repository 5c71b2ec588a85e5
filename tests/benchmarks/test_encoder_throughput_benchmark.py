"""benchmarks/encoder_throughput.py: the products-only floor of a step."""

import re

import pytest

pytestmark = pytest.mark.tf_only(reason="the benchmark times TensorFlow models")

TINY = dict(hidden=8, heads=2, intermediate=16, length=4, batch=3, layers=2)


@pytest.fixture
def benchmark(load_benchmark):
    return load_benchmark("encoder_throughput")


def test_products_flops_equal_the_model_flops_formula(benchmark):
    # Two derivations: the per-token formula of the model FLOPs, and the sum
    # over the products the floor actually computes.
    for size in (TINY, benchmark.SIZES["a"], benchmark.SIZES["b"]):
        tokens = size["batch"] * size["length"]
        _, flops = benchmark.products_unit(size, jit=False)
        assert flops == benchmark.flops_per_token(size) * tokens


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
    assert len(re.findall(r" dot\(", hlo)) == TINY["layers"] * per_layer
