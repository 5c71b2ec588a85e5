"""Neural Turing Machine and Differentiable Neural Computer memory cells."""

__all__ = []
