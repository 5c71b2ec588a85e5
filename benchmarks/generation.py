"""Generation speed: cached vs uncached decoding, and ours vs keras-hub GPT-2.

Two comparisons, each run interleaved in this one process, on a randomly
initialised 4-layer decoder-only model (hidden 256, 4 heads, intermediate
1024, learned positions, pre-LN, GELU, tied embeddings -- the GPT-2 layout),
greedy decoding of 128 new tokens after a 16-token prompt, batch 1 and 8:

1. `CausalLMGenerator.greedy_search(use_cache=True)` (one token per step over
   the KV caches) against `use_cache=False` (the same compiled loop, but the
   whole prefix goes through the decoder blocks at every step).
2. Our cached greedy search against `keras_hub.models.GPT2CausalLM.generate`
   (greedy sampler, no stop tokens, XLA) with a `GPT2Backbone` of the same
   sizes.

Both sides are compiled (XLA) and warmed up before timing; each side's time
is the best (minimum) of `--repeats` interleaved runs, the estimate least
disturbed by other processes on a shared machine. One JSON object per line:
`{"benchmark", "config", "metric", "ours", "peer_name", "peer", "ratio"}`
with `ratio = ours / peer` in tokens per second (> 1: ours is faster).

Run:

    python benchmarks/generation.py                  # about 5 minutes on 2 CPU cores
    python benchmarks/generation.py --repeats 1 --batch-sizes 1   # quick check
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_attention as ka  # noqa: E402

SIZES = dict(num_layers=4, hidden_dim=256, num_heads=4, intermediate_dim=1024)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabulary-size", type=int, default=8192)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-keras-hub", action="store_true")
    return parser.parse_args()


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def report(config, metric, ours, peer_name, peer):
    print(
        json.dumps(
            {
                "benchmark": "generation",
                "config": config,
                "metric": metric,
                "ours": round(ours, 2),
                "peer_name": peer_name,
                "peer": round(peer, 2),
                "ratio": round(ours / peer, 3),
            }
        ),
        flush=True,
    )


def keras_hub_model(vocabulary_size, max_length):
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=SIZES["num_layers"],
        num_heads=SIZES["num_heads"],
        hidden_dim=SIZES["hidden_dim"],
        intermediate_dim=SIZES["intermediate_dim"],
        dropout=0.0,
        max_sequence_length=max_length,
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(sampler="greedy")
    return model


def main():
    args = parse_args()
    keras.utils.set_random_seed(0)
    max_length = args.prompt_length + args.new_tokens
    model = ka.models.causal_lm(
        vocabulary_size=args.vocabulary_size,
        sequence_length=max_length,
        dropout=0.0,
        **SIZES,
    )
    generator = ka.generation.CausalLMGenerator(model)
    peer = None if args.skip_keras_hub else keras_hub_model(args.vocabulary_size, max_length)
    rng = np.random.default_rng(0)

    for batch in args.batch_sizes:
        prompt = rng.integers(1, args.vocabulary_size, (batch, args.prompt_length))
        prompt = prompt.astype("int32")
        tokens = batch * args.new_tokens
        config = dict(
            SIZES,
            vocabulary_size=args.vocabulary_size,
            batch_size=batch,
            prompt_length=args.prompt_length,
            new_tokens=args.new_tokens,
            decoding="greedy",
            backend=keras.backend.backend(),
            jit_compile=True,
        )

        def cached():
            return generator.greedy_search(prompt, max_new_tokens=args.new_tokens)

        def uncached():
            return generator.greedy_search(
                prompt, max_new_tokens=args.new_tokens, use_cache=False
            )

        hub_inputs = {
            "token_ids": np.pad(prompt, ((0, 0), (0, args.new_tokens))),
            "padding_mask": np.pad(
                np.ones_like(prompt, dtype=bool), ((0, 0), (0, args.new_tokens))
            ),
        }

        def hub():
            return peer.generate(hub_inputs, stop_token_ids=None)

        # Warm-up: trace and compile every function once.
        same = (cached() == uncached()).all()
        if peer is not None:
            hub()
        times = {"cached": [], "uncached": [], "hub": []}
        for _ in range(args.repeats):
            times["cached"].append(timed(cached))
            times["uncached"].append(timed(uncached))
            if peer is not None:
                times["hub"].append(timed(hub))
        rate = {k: tokens / min(v) for k, v in times.items() if v}
        report(
            dict(config, cached_equals_uncached=bool(same)),
            "tokens_per_second",
            rate["cached"],
            "keras_attention uncached (full prefix recomputed every step)",
            rate["uncached"],
        )
        if peer is not None:
            report(
                config,
                "tokens_per_second",
                rate["cached"],
                "keras_hub.models.GPT2CausalLM.generate (greedy)",
                rate["hub"],
            )


if __name__ == "__main__":
    main()
