"""Data: tokenizers, datasets and generated algorithmic tasks."""
