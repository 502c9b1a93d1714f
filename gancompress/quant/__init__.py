"""Quantization: fake quantization for QAT (int8 export lives in export/int8.py)."""
