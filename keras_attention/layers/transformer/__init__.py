"""Transformer building blocks: feed-forward, encoder and decoder blocks."""

__all__ = []
