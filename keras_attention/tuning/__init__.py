"""keras-tuner HyperModels for attention and memory models."""
