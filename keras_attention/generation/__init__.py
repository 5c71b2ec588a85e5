"""Decoding over a KV cache: greedy, beam search, sampling."""
