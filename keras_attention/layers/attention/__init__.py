"""Attention layers: classic (Bahdanau, Luong), scaled dot-product, multi-head."""

__all__ = []
