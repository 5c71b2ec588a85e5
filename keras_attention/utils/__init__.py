"""Small shared helpers for layers and models (argument validation)."""
