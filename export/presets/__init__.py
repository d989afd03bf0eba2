"""Quantization presets shipped with lite-rm (read with importlib.resources)."""
