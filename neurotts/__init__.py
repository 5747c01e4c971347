"""neurotts: neural text-to-speech trained from scratch."""

__version__ = "0.1.0"
