"""Images -> descriptors: batching, progress and the bad-image policy, for any model that maps
images to descriptors (PyTorch or ONNX Runtime). Below evaluation, training, quantization and maps."""
