"""Renderers: pure functions over the report document (or the graph it carries)."""
