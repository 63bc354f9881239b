"""Benchmark commands (one script per benchmark) and their shared helpers."""
