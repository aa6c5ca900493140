"""Visualizers for the toolboxes' tools (imported by the configs that name them)."""
