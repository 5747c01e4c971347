"""The one rule for naming a speaker of a model, shared by everything that speaks with one
(``synth --speaker``, eval, the server's ``voice``, the ONNX runtime's ``--speaker``).

A model's speaker table is the sorted speaker labels of the store it was trained on (``[]``
for a single-speaker model; see :attr:`neurotts.data.store.FeatureStore.speakers`); its
checkpoint carries it, and an exported voice's ``voice.json`` too. A name must be in the
table; a name for a single-speaker model is refused; no name on a multi-speaker model means
its first speaker (the callers say so). Imports nothing heavy: the ONNX runtime uses it
without torch.
"""

from __future__ import annotations

from neurotts.errors import UserError


class SpeakerError(UserError, ValueError):
    """A speaker name a model does not have, or a speaker asked of a single-speaker model."""


def pick_speaker(speakers: list[str], name: str | None, what: str,
                 option: str = "--speaker") -> int | None:
    """Speaker ``name``'s id in the table ``speakers`` (``what``: the model, ``option``: how
    the user named the speaker, both for the message); None when no name is given (the
    caller then takes the first speaker of a multi-speaker model and says so)."""
    if name is None:
        return None
    if not speakers:
        raise SpeakerError(f"{option} {name}: {what} is a single-speaker model (trained on a "
                           f"store without speaker labels); leave {option} out")
    if name not in speakers:
        raise SpeakerError(f"{option} {name}: {what} has no such speaker; its speakers: "
                           f"{', '.join(speakers)}")
    return speakers.index(name)
