"""Shared TVM helpers for every TVM-based target: import, build (with tuning cache), VM executor."""
