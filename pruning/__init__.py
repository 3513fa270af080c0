"""Compression of torch models (block-based pruning, quantization) into Variants; torch-only."""
