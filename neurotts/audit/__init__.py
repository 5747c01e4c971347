"""``neurotts audit``: find the clips of a corpus that would hurt training, before training.

- :mod:`~neurotts.audit.measures`: per-clip audio measures (levels, silences, SNR, clipping).
- :mod:`~neurotts.audit.transcript`: does the transcript fit the audio (pocketsphinx).
- :mod:`~neurotts.audit.acoustic`: ``--acoustic RUN``, a trained Tacotron 2's view of each clip.
- :mod:`~neurotts.audit.scoring`: corpus statistics, scores, reasons, the ranking.
- :mod:`~neurotts.audit.report`: ``audit.tsv``, ``exclude.txt``, ``audit.json``, ``audit.md``.
- :mod:`~neurotts.audit.run`: the stages, the worker pool and the journal.
- :mod:`~neurotts.audit.corrupt`: a copy of a corpus with known defects, to measure detection.
"""
