"""The layers of a built model that decoding runs, found by their names.

The builders of `keras_attention.models` name their layers consistently
(see `keras_attention.models.model_parts`); `DecodingParts` looks them up and
runs them step by step with KV caches, or over the whole buffer without.

Shape letters: N rows (batch, times beams), L buffer length (the cache
length), T new tokens, S source length, E hidden size, V vocabulary size.
"""

import contextlib
import math

import keras
from keras import ops

from keras_attention.models.builder_model import BuilderModel


def _matrix_shape(layer):
    """The 2-D `(contracted, kept)` or `(kept, contracted)` shape of an
    `EinsumDense` kernel of rank > 2 whose contracted axes lead or trail,
    or `None` (rank <= 2, another axis order, quantized or LoRA layers)."""
    kernel = getattr(layer, "kernel", None)
    if (
        kernel is None
        or len(kernel.shape) <= 2
        or getattr(layer, "quantization_mode", None) is not None
        or getattr(layer, "lora_enabled", False)
    ):
        return None
    inputs, outputs = layer.equation.split("->")
    input_letters, kernel_letters = inputs.split(",")
    contracted = [
        c in input_letters and c not in outputs for c in kernel_letters
    ]
    count = sum(contracted)
    if count == 0 or count == len(kernel_letters):
        return None
    dims = [int(d) for d in kernel.shape]
    if all(contracted[:count]) and not any(contracted[count:]):
        return (math.prod(dims[:count]), math.prod(dims[count:]))
    if all(contracted[-count:]) and not any(contracted[:-count]):
        return (math.prod(dims[:-count]), math.prod(dims[-count:]))
    return None


def check_model(model, builder):
    """Raise unless `model` was built by the builder named `builder`."""
    if not isinstance(model, BuilderModel) or model.builder != builder:
        found = getattr(model, "builder", type(model).__name__)
        raise ValueError(
            "Received an invalid value for argument `model`, expected a "
            f"model built by `keras_attention.models.{builder}`. Received: "
            f"model={getattr(model, 'name', model)!r} ({found})"
        )


class DecodingParts:
    """Embedding, blocks, final norms and output head of a built model.

    Args:
        model: a `causal_lm` or `transformer_translator` model.
    """

    def __init__(self, model):
        args = model.arguments
        self.seq2seq = model.builder == "transformer_translator"
        self.sequence_length = args["sequence_length"]
        self.vocabulary_size = args.get("target_vocabulary_size") or args["vocabulary_size"]
        self.source_vocabulary_size = args["vocabulary_size"]
        norm_first = args["norm_first"]
        if self.seq2seq:
            shared = args["share_embeddings"]
            self.source_embedding = model.get_layer(
                "embedding" if shared else "source_embedding"
            )
            self.target_embedding = model.get_layer(
                "embedding" if shared else "target_embedding"
            )
            self.encoder_blocks = [
                model.get_layer(f"encoder_block_{i}") for i in range(args["num_layers"])
            ]
            self.encoder_norm = (
                model.get_layer("encoder_final_norm") if norm_first else None
            )
            num_decoder_layers = args["num_decoder_layers"] or args["num_layers"]
        else:
            self.target_embedding = model.get_layer("embedding")
            num_decoder_layers = args["num_layers"]
        self.decoder_blocks = [
            model.get_layer(f"decoder_block_{i}") for i in range(num_decoder_layers)
        ]
        self.decoder_norm = model.get_layer("decoder_final_norm") if norm_first else None
        self.lm_head = None if args["tie_output_embedding"] else model.get_layer("lm_head")

    def matrix_kernels(self):
        """`(kernel variable, 2-D matrix)` pairs of the decoder blocks'
        projection kernels of rank > 2 (`(E, H, D)` -> `(E, H * D)`, ...).

        Computed once, outside the decoding loop, and read inside it through
        `matrix_kernel_scope`: on XLA:CPU, a `(E, H, D)` kernel read inside
        the loop gets its `(E, H * D)` reshape fused into a one-row product
        (one token at batch 1), which is emitted as a naive loop several
        times slower than the library matrix-vector product used for a
        loop-carried 2-D matrix. Same values, same math.
        """
        pairs = []
        seen = set()
        for block in self.decoder_blocks:
            for layer in block._flatten_layers(include_self=False, recursive=True):
                if not isinstance(layer, keras.layers.EinsumDense):
                    continue
                shape = _matrix_shape(layer)
                kernel = layer.kernel
                if shape is None or id(kernel) in seen:
                    continue
                seen.add(id(kernel))
                pairs.append((kernel, ops.reshape(ops.convert_to_tensor(kernel), shape)))
        return pairs

    @staticmethod
    def matrix_kernel_scope(pairs):
        """A `keras.StatelessScope` reading each kernel of `pairs` (from
        `matrix_kernels`) as its matrix reshaped back; enter it inside the
        loop body. A null context when `pairs` is empty."""
        if not pairs:
            return contextlib.nullcontext()
        return keras.StatelessScope(
            state_mapping=[(k, ops.reshape(m, k.shape)) for k, m in pairs]
        )

    # ------------------------------------------------------------------ #
    def encode(self, source_ids):
        """Encoder output `(N, S, E)` and source padding mask `(N, S)`."""
        source_mask = ops.not_equal(source_ids, 0)  # (N, S)
        x = self.source_embedding(source_ids)  # (N, S, E)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=source_mask, training=False)  # (N, S, E)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x, source_mask

    def cross_attention_caches(self, encoder_output):
        """Projected encoder keys/values of every decoder block."""
        return [
            block.compute_cross_attention_cache(encoder_output)
            for block in self.decoder_blocks
        ]

    def empty_caches(self, rows, length, rewind=0):
        """Empty self-attention caches of every decoder block (`(N, L, K,
        D)` keys and values for exact attention), for decoding that may
        start `rewind` positions before the newest one written."""
        return [
            block.get_initial_cache(rows, length, rewind=rewind)
            for block in self.decoder_blocks
        ]

    def output_head(self):
        """The output projection `(kernel (E, V), bias (V,) or None)`.

        Computed once per generation, outside the decoding loop: the tied
        kernel is the transposed embedding table, laid out `(E, V)` so that
        each step is a plain `(N, E) x (E, V)` product. (Transposing inside
        the loop lets XLA:CPU fuse the transpose into a strided loop that is
        several times slower than the product itself.)
        """
        dtype = self.target_embedding.compute_dtype
        if self.lm_head is None:
            table = self.target_embedding.token_embedding.embeddings  # (V, E)
            return ops.transpose(ops.cast(table, dtype)), None  # (E, V)
        return ops.cast(self.lm_head.kernel, dtype), ops.cast(self.lm_head.bias, dtype)

    def logits(self, hidden, head):
        """`(N, T, V)` float32 logits of hidden states `(N, T, E)`.

        Args:
            hidden: `(N, T, E)` decoder output before the final norm.
            head: the output of `output_head()`.
        """
        if self.decoder_norm is not None:
            hidden = self.decoder_norm(hidden)
        kernel, bias = head
        logits = ops.matmul(hidden, kernel)  # (N, T, V)
        if bias is not None:
            logits = logits + bias
        return ops.cast(logits, "float32")  # (N, T, V)

    def decode_cached(self, token_ids, cache_index, caches, padding_mask, context):
        """Run T new tokens at `cache_index` through the decoder blocks.

        Args:
            token_ids: `(N, T)` ids at positions `cache_index ..`.
            cache_index: int or scalar tensor.
            caches: list of `(key_cache, value_cache)`, `(N, L, K, D)`.
            padding_mask: `(N, L)` mask of real tokens over the cache.
            context: `None`, or `(encoder_output, source_mask, cross_caches)`.

        Returns:
            Hidden states `(N, T, E)` (before the final norm) and the updated
            caches.
        """
        x = self.target_embedding(token_ids, start_index=cache_index)  # (N, T, E)
        new_caches = []
        for i, (block, cache) in enumerate(zip(self.decoder_blocks, caches)):
            kwargs = dict(
                decoder_padding_mask=padding_mask,
                self_attention_cache=cache,
                cache_index=cache_index,
                training=False,
            )
            if context is None:
                x, cache = block(x, **kwargs)
            else:
                encoder_output, source_mask, cross_caches = context
                x, cache, _ = block(
                    x,
                    encoder_output,
                    encoder_padding_mask=source_mask,
                    cross_attention_cache=cross_caches[i],
                    **kwargs,
                )
            new_caches.append(cache)
        return x, new_caches

    def decode_full(self, token_ids, padding_mask, context):
        """Hidden states `(N, L, E)` of a full causal pass without caches."""
        x = self.target_embedding(token_ids)  # (N, L, E)
        for block in self.decoder_blocks:
            if context is None:
                x = block(x, decoder_padding_mask=padding_mask, training=False)
            else:
                encoder_output, source_mask, _ = context
                x = block(
                    x,
                    encoder_output,
                    decoder_padding_mask=padding_mask,
                    encoder_padding_mask=source_mask,
                    training=False,
                )
        return x
