"""tryon.export: turns the published checkpoints into ONNX and validates the result.

Heavy side: TensorFlow, tf2onnx, torch and onnx are imported here, never in tryon.
"""
