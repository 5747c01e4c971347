"""Speak with an exported voice using numpy, onnxruntime and the text frontend only: nothing on
this package's import path may import torch (tests/test_export.py checks it in a fresh
interpreter). ``python -m neurotts.runtime VOICE_DIR "Text." -o out.wav``."""
