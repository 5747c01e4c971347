"""The eSpeak NG library, as bundled by the ``espeakng-loader`` wheel: phonemes and speech.

Nothing is installed on the system and nothing is downloaded: the wheel carries
``libespeak-ng.so`` and its ``espeak-ng-data`` (dictionaries for ~100 languages). We call the
library through ``ctypes`` rather than through ``phonemizer``: the same three entry points
(initialise, choose a voice, text to phonemes) serve phonemes for ``text=ipa`` and for English
words CMUdict lacks, and synthesis (``espeak_Synth``) lets tests build a small corpus in any
language at run time.

eSpeak NG keeps one voice and one output mode per process and is not re-entrant, so every call
holds ``_LOCK`` and sets the voice it needs. Licence: eSpeak NG is GPL-3.0-or-later; it is
loaded as a separate shared library, never compiled into neurotts.
"""

from __future__ import annotations

import ctypes
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from neurotts.errors import UserError

# espeak_AUDIO_OUTPUT: SYNCHRONOUS hands every synthesised block to our callback before
# espeak_Synth returns (no audio device, no thread of its own).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report a bad data path instead of calling exit()
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PHONEMES_IPA = 0x02
PHONE_SEPARATOR = "_"  # asked for between phonemes of a word; words are split by spaces

_LOCK = threading.RLock()
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)


class EspeakError(UserError, RuntimeError):
    """eSpeak NG is missing or refused a request (the message says which and what to do)."""


class _Voice(ctypes.Structure):
    # espeak_VOICE from speak_lib.h; ``languages`` is a run of (priority byte, name, NUL)
    # entries ended by a zero priority byte.
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
                ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


class _Engine:
    """The loaded library with its prototypes declared; one per process (see :func:`engine`)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise EspeakError("eSpeak NG is not installed: pip install espeakng-loader "
                              "(it bundles the library and its data)") from None
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                              ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        # The argument is the folder that holds espeak-ng-data, not that folder itself.
        home = str(Path(espeakng_loader.get_data_path()).parent).encode()
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, home,
                                                 _INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise EspeakError(f"eSpeak NG could not start with its data in {home.decode()}")
        self.lib = lib
        self.voice: str | None = None
        self._blocks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept alive as long as the engine
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes._Pointer, n: int, _events: int) -> int:
        if n > 0:
            self._blocks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0: go on synthesising

    def use(self, identifier: str) -> None:
        if self.voice != identifier:
            if self.lib.espeak_SetVoiceByName(identifier.encode()) != 0:
                raise EspeakError(f"eSpeak NG has no voice {identifier!r}")
            self.voice = identifier


@lru_cache(maxsize=1)
def engine() -> _Engine:
    with _LOCK:
        return _Engine()


@lru_cache(maxsize=1)
def voices() -> dict[str, str]:
    """Language name ("en-us", "de", "fr-fr", ...) -> the voice identifier that speaks it.

    A language listed by several voices keeps the first voice that gives it the highest
    priority (eSpeak NG's own order).
    """
    eng = engine()
    best: dict[str, tuple[int, str]] = {}
    with _LOCK:
        listed = eng.lib.espeak_ListVoices(None)
        k = 0
        while listed[k]:
            voice = listed[k].contents
            for priority, lang in _languages(voice.languages):
                if lang not in best or priority < best[lang][0]:
                    best[lang] = (priority, voice.identifier.decode())
            k += 1
    return {lang: ident for lang, (_, ident) in sorted(best.items())}


def _languages(address: int) -> list[tuple[int, str]]:
    out = []
    while True:
        priority = ctypes.c_ubyte.from_address(address).value
        if priority == 0:
            return out
        name = ctypes.string_at(address + 1)
        out.append((priority, name.decode().lower()))
        address += len(name) + 2


def resolve_language(language: str) -> str:
    """The eSpeak NG language name for ``language`` (case and "_" forgiven; "fr" finds "fr-fr"
    when eSpeak NG has no plain "fr"). :class:`EspeakError` listing the supported ones if none."""
    known = voices()
    key = language.strip().lower().replace("_", "-")
    if key in known:
        return key
    regional = [lang for lang in known if lang.split("-")[0] == key]
    if len(regional) >= 1 and f"{key}-{key}" in regional:
        return f"{key}-{key}"
    if len(regional) == 1:
        return regional[0]
    raise EspeakError(f"unknown language {language!r}; eSpeak NG speaks: {', '.join(known)}")


def phonemes(text: str, language: str) -> list[list[str]]:
    """IPA phonemes of ``text`` as words, each a list of phonemes with stress marks attached
    (e.g. ``[["h", "ə", "l", "ˈoʊ"], ["w", "ˈɜː", "l", "d"]]``). eSpeak NG reads punctuation
    as clause breaks and drops it; callers that keep punctuation split the text around it."""
    eng = engine()
    identifier = voices()[resolve_language(language)]
    data = ctypes.create_string_buffer(text.encode("utf-8"))
    cursor = ctypes.c_void_p(ctypes.addressof(data))
    mode = _PHONEMES_IPA | (ord(PHONE_SEPARATOR) << 8)
    words: list[list[str]] = []
    with _LOCK:
        eng.use(identifier)
        while cursor.value:  # one clause per call; the library advances the cursor, NULL at end
            clause = eng.lib.espeak_TextToPhonemes(ctypes.byref(cursor), _CHARS_UTF8, mode)
            for word in (clause or b"").decode("utf-8").split():
                phones = [p for p in word.split(PHONE_SEPARATOR) if p]
                if phones:
                    words.append(phones)
    return words


def synthesize(text: str, language: str) -> tuple[np.ndarray, int]:
    """eSpeak NG's own speech for ``text``: ``(samples (T,) int16, sample_rate)``."""
    eng = engine()
    identifier = voices()[resolve_language(language)]
    data = text.encode("utf-8")
    with _LOCK:
        eng.use(identifier)
        eng._blocks = []
        status = eng.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                      None, None)
        if status != 0:
            raise EspeakError(f"eSpeak NG could not synthesise {text[:40]!r} (status {status})")
        blocks, eng._blocks = eng._blocks, []
    wav = np.concatenate(blocks) if blocks else np.zeros(0, np.int16)
    return wav.astype(np.int16), eng.sample_rate
