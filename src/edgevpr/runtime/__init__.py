"""What runs a model: the CPU's integer kernels and ONNX Runtime. Below evaluate, quantize and maps."""
