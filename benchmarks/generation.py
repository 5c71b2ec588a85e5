"""Generation speed: cached vs uncached decoding, and ours vs keras-hub GPT-2.

Two comparisons, timed in the same interleaved rounds of this one process,
on a randomly initialised 4-layer decoder-only model (hidden 256, 4 heads,
intermediate 1024, learned positions, pre-LN, GELU, tied embeddings -- the
GPT-2 layout, vocabulary 8192), greedy decoding of exactly 128 new tokens
after a 16-token prompt, batch 1 and 8:

1. `CausalLMGenerator.greedy_search(use_cache=True)` against
   `use_cache=False`. Cached: the prompt is prefilled into the KV caches in
   one pass, then each step runs the decoder blocks on the one new token.
   Uncached: the same compiled loop, but every step runs the decoder blocks
   (embedding, attention, feed-forward) over the whole fixed-length buffer
   of L = prompt + new tokens = 144 positions -- the prompt, the tokens
   generated so far, and the not-yet-generated (padding) positions, all
   recomputed from scratch -- and keeps the hidden state of the one position
   it needs; the output head runs on that position only, as in the cached
   path.
2. Our cached greedy search against `keras_hub.models.GPT2CausalLM.generate`
   (greedy sampler, `stop_token_ids=None`, XLA) with a `GPT2Backbone` of the
   same sizes.

Equivalent work: no end token on either side (our generator gets
`end_token_id=None`, keras-hub `stop_token_ids=None`), so both fill every
one of the 128 positions after the prompt; the number of generated tokens
is counted on each side's output and written in the result line
(`new_tokens_per_row`). Both sides are compiled with XLA and warmed up
(one untimed call each, which traces and compiles) before timing. One
difference is the peer's own design: keras-hub prefills its cache with one
forward pass over the whole 144-slot buffer, ours over the 16 prompt slots.

Timing rule (`benchmarks/common.py`): the sides run in interleaved rounds
(rotating order), each side's time is the median over `--repeats` rounds.
One JSON object per line (DESIGN.md keys), `ratio = ours / peer` in tokens
per second (> 1: ours is faster), plus the process-CPU-time ratio and the
machine `context`; lines are appended to
`benchmarks/results/generation.jsonl`.

3. With `--attention-kernel K` (and `--kernel-option NAME=VALUE`): the
   model's blocks use kernel K (`performer`, `local`, `big_bird`: the
   kernels with cached decoding), comparisons 1 and 2 run on it, and a
   third line compares its cached greedy search with the same model
   using exact attention (`dot_product`, same sizes and seed), so
   `ratio = K tokens/s / exact tokens/s`. BigBird's cache holds every
   position (O(S_max) work per token, as exact attention's); local's is a
   ring of its g + w reachable positions and the prompt's P (O(g + w + P)
   work and memory per token: the generator re-decodes from the shortest
   prompt's end); Performer's is a fixed-size running state (O(M Dv) per token
   and head, M random features). The line's `cache_bytes` gives the size
   of both models' decoding caches at this batch and length.

Run:

    python benchmarks/generation.py            # 5-15 minutes on 2 shared CPU cores
    python benchmarks/generation.py --attention-kernel local \
        --kernel-option window_size=16 --skip-keras-hub
    python benchmarks/generation.py --smoke    # tiny sizes, seconds, no results file
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # common.py; keras_attention

import keras  # noqa: E402
import numpy as np  # noqa: E402

import common  # noqa: E402
import keras_attention as ka  # noqa: E402
from keras_attention.models.model_parts import CAUSAL_DECODING_KERNELS  # noqa: E402
from keras_attention.utils.command_line import kernel_option  # noqa: E402

SIZES = dict(num_layers=4, hidden_dim=256, num_heads=4, intermediate_dim=1024)
SMOKE_SIZES = dict(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32)
RESULTS = "generation.jsonl"
UNCACHED = "keras_attention uncached (all L buffer positions recomputed every step)"
EXACT = "keras_attention dot_product (exact) cached decoding, same sizes"
HUB = "keras_hub.models.GPT2CausalLM.generate (greedy, XLA)"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabulary-size", type=int, default=8192)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-keras-hub", action="store_true")
    parser.add_argument("--skip-uncached", action="store_true",
                        help="do not time uncached decoding (quadratic in the "
                             "length: minutes per round at thousands of tokens)")
    parser.add_argument("--attention-kernel", default="dot_product",
                        choices=CAUSAL_DECODING_KERNELS,
                        help="the blocks' kernel; not dot_product: also timed "
                             "against exact attention's cached decoding")
    parser.add_argument("--kernel-option", type=kernel_option, action="append",
                        default=[], metavar="NAME=VALUE",
                        help="an option of the kernel's layer, repeatable")
    parser.add_argument(
        "--smoke", action="store_true",
        help="tiny model, 4 new tokens, batch 2, 1 round; no results file",
    )
    args = parser.parse_args(argv)
    args.sizes = SIZES
    args.results = RESULTS
    if args.smoke:
        args.sizes = SMOKE_SIZES
        args.vocabulary_size, args.prompt_length, args.new_tokens = 64, 4, 4
        args.batch_sizes, args.repeats, args.results = [2], 1, None
    return args


def keras_hub_model(sizes, vocabulary_size, max_length):
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocabulary_size,
        num_layers=sizes["num_layers"],
        num_heads=sizes["num_heads"],
        hidden_dim=sizes["hidden_dim"],
        intermediate_dim=sizes["intermediate_dim"],
        dropout=0.0,
        max_sequence_length=max_length,
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(sampler="greedy", jit_compile=True)
    return model


def cache_bytes(generator, batch, length, prompt_length):
    """Bytes of the decoding caches a generator makes for `batch` rows of
    `length` positions after a prompt of `prompt_length` (every layer's
    keys and values, or running state)."""
    caches = generator.empty_caches(batch, length, prompt_length)
    return int(sum(np.asarray(t).nbytes for t in keras.tree.flatten(caches)))


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    max_length = args.prompt_length + args.new_tokens
    def build(kernel, options):
        keras.utils.set_random_seed(0)
        return ka.models.causal_lm(
            vocabulary_size=args.vocabulary_size, sequence_length=max_length,
            dropout=0.0, attention_kernel=kernel, attention_kernel_options=options,
            **args.sizes,
        )

    model = build(args.attention_kernel, dict(args.kernel_option) or None)
    generator = ka.generation.CausalLMGenerator(model, end_token_id=None, jit_compile=True)
    exact = None
    if args.attention_kernel != "dot_product":
        exact = ka.generation.CausalLMGenerator(
            build("dot_product", None), end_token_id=None, jit_compile=True)
    peer = None
    if not args.skip_keras_hub:
        peer = keras_hub_model(args.sizes, args.vocabulary_size, max_length)
        counts = {"ours": model.count_params(), "keras_hub": peer.count_params()}
    rng = np.random.default_rng(0)
    lines = []

    for batch in args.batch_sizes:
        prompt = rng.integers(1, args.vocabulary_size, (batch, args.prompt_length))
        prompt = prompt.astype("int32")
        tokens = batch * args.new_tokens
        config = dict(
            args.sizes, vocabulary_size=args.vocabulary_size, batch_size=batch,
            prompt_length=args.prompt_length, new_tokens=args.new_tokens,
            decoding="greedy", jit_compile=True, rounds=args.repeats,
            attention_kernel=args.attention_kernel,
            attention_kernel_options=model.arguments["attention_kernel_options"],
        )
        hub_inputs = {
            "token_ids": np.pad(prompt, ((0, 0), (0, args.new_tokens))),
            "padding_mask": np.pad(
                np.ones_like(prompt, dtype=bool), ((0, 0), (0, args.new_tokens))
            ),
        }
        outputs = {}

        def unit(name, function):
            def call():
                outputs[name] = function()
            return call

        units = {
            "cached": unit("cached", lambda: generator.greedy_search(
                prompt, max_new_tokens=args.new_tokens, use_cache=True)),
        }
        if not args.skip_uncached:
            units["uncached"] = unit("uncached", lambda: generator.greedy_search(
                prompt, max_new_tokens=args.new_tokens, use_cache=False))
        if peer is not None:
            units["hub"] = unit("hub", lambda: keras.tree.map_structure(
                np.asarray, peer.generate(hub_inputs, stop_token_ids=None)))
        if exact is not None:
            units["exact"] = unit("exact", lambda: exact.greedy_search(
                prompt, max_new_tokens=args.new_tokens, use_cache=True))
        traces = generator.trace_count
        times = common.interleaved(units, args.repeats, warmup=1)
        # One trace per decoding path (cached, uncached), none while timing.
        retraced = generator.trace_count - traces > len(
            [k for k in ("cached", "uncached") if k in units])

        # Count the generated tokens of each side's last output.
        generated = {
            k: int((outputs[k][:, args.prompt_length:] != 0).sum() // batch)
            for k in ("cached", "uncached", "exact") if k in outputs
        }
        if peer is not None:
            generated["hub"] = int(
                outputs["hub"]["padding_mask"][:, args.prompt_length:].sum() // batch
            )
        if any(n != args.new_tokens for n in generated.values()):
            raise RuntimeError(f"unequal work: new tokens per row {generated}")
        rate = {k: tokens / t.seconds for k, t in times.items()}

        def seconds(k):
            return [round(t, 3) for t in times[k].all]

        first = len(lines)
        if not args.skip_uncached:
            lines.append(common.record(
                "generation", config, "tokens_per_second", rate["cached"],
                UNCACHED, rate["uncached"], target=5.0,
                cached_equals_uncached=bool(
                    np.array_equal(outputs["cached"], outputs["uncached"])),
                new_tokens_per_row=generated, retraced_while_timing=retraced,
                cpu_time_ratio=round(times["uncached"].cpu_seconds
                                     / times["cached"].cpu_seconds, 3),
                seconds_per_round={"ours": seconds("cached"),
                                   "peer": seconds("uncached")},
            ))
        if peer is not None:
            lines.append(common.record(
                "generation", config, "tokens_per_second", rate["cached"],
                HUB, rate["hub"], target=1.0, params=counts,
                new_tokens_per_row=generated, retraced_while_timing=retraced,
                cpu_time_ratio=round(times["hub"].cpu_seconds
                                     / times["cached"].cpu_seconds, 3),
                seconds_per_round={"ours": seconds("cached"), "peer": seconds("hub")},
            ))
        if exact is not None:
            lines.append(common.record(
                "generation", config, "tokens_per_second", rate["cached"],
                EXACT, rate["exact"],
                cache_bytes={
                    "ours": cache_bytes(generator, batch, max_length, args.prompt_length),
                    "peer": cache_bytes(exact, batch, max_length, args.prompt_length),
                },
                new_tokens_per_row=generated, retraced_while_timing=retraced,
                cpu_time_ratio=round(times["exact"].cpu_seconds
                                     / times["cached"].cpu_seconds, 3),
                seconds_per_round={"ours": seconds("cached"), "peer": seconds("exact")},
            ))
        for line in lines[first:]:
            common.emit(line, args.results)
    return lines


if __name__ == "__main__":
    main()
