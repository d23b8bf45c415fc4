"""Shipping a trained model: :mod:`.export` (ONNX, checked against torch), :mod:`.runtime` (onnxruntime
without torch) and :mod:`.heatmaps` (the PNG heat maps and ``scores.csv`` that both predict paths write)."""
