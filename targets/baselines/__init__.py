"""Framework baselines a user would deploy instead of a TVM build: PyTorch eager, ONNX Runtime."""
