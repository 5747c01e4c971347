"""``neurotts export``: a trained Tacotron 2 as ONNX graphs plus ``voice.json`` for the
torch-free runtime (:mod:`neurotts.runtime`). ``graphs`` cuts the model into graphs,
``reference`` runs torch on given prenet masks, ``run`` writes and checks a voice folder."""
