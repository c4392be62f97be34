"""tryon.runtime: virtual try-on with ONNX Runtime, NumPy and OpenCV only."""
