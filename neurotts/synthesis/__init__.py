"""Synthesis: the engine (text -> waveform, in batches of pieces) and the ``synth`` command."""
