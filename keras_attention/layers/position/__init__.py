"""Positional encodings: sinusoidal, learned, rotary, relative bias, ALiBi."""

__all__ = []
