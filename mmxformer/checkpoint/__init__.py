"""Checkpoints: safe loading (stored configs read as data), which weights fit a model, verified
downloads, the model index, publishing, and mmengine's loader prefixes routed through them."""
