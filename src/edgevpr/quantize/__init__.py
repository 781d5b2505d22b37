"""Deployment: BN folding, ONNX export, calibration, fp16 / int8 / int4 quantization, ONNX Runtime."""
