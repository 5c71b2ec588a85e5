"""Decoding over a KV cache: greedy, beam search, sampling."""

from keras_attention.generation.causal_lm_generator import CausalLMGenerator
from keras_attention.generation.logits_processing import length_penalty
from keras_attention.generation.logits_processing import top_k_logits
from keras_attention.generation.logits_processing import top_p_logits
from keras_attention.generation.seq2seq_generator import Seq2SeqGenerator

__all__ = [
    "CausalLMGenerator",
    "Seq2SeqGenerator",
    "length_penalty",
    "top_k_logits",
    "top_p_logits",
]
