"""The exported models: the folder and its manifest, and the ONNX Runtime sessions that run them."""
