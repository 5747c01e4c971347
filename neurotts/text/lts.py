"""Letter to sound for English words CMUdict lacks: eSpeak NG's rules, mapped to ARPAbet.

eSpeak NG (bundled by the ``espeakng-loader`` wheel) pronounces any English spelling with its
own rules and a 100k-word exception list; :func:`guess` turns its American IPA into CMUdict's
phones so an unknown word is said with the phones the model already learns, not spelled.

All-capital words: CMUdict's entry wins where it has one ("FBI" is spelled, "NASA" and "NATO"
are read as words, as CMUdict lists them). One it lacks goes to eSpeak NG with its capitals,
and eSpeak NG decides: letter strings it cannot read as a word are spelled ("NKVD", "NAACP"),
the rest are read ("UNESCO").
"""

from __future__ import annotations

from functools import lru_cache

from neurotts.text import espeak

# eSpeak NG's en-us phonemes (every one it produced for the 13,100 LJSpeech texts, plus the
# few other English voices use) -> ARPAbet without stress. The vowel of a multi-phone entry
# is its first phone: it takes the stress.
_IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "ɡ": ("G",), "g": ("G",),
    "f": ("F",), "v": ("V",), "θ": ("TH",), "ð": ("DH",), "s": ("S",), "z": ("Z",),
    "ʃ": ("SH",), "ʒ": ("ZH",), "h": ("HH",), "tʃ": ("CH",), "dʒ": ("JH",), "m": ("M",),
    "n": ("N",), "ŋ": ("NG",), "l": ("L",), "ɹ": ("R",), "r": ("R",), "w": ("W",), "j": ("Y",),
    # A flap and a glottal stop are allophones of /t/ (or /d/) in American English.
    "ɾ": ("T",), "ʔ": ("T",), "x": ("K",), "ç": ("HH",), "ɬ": ("L",),
    "ɪ": ("IH",), "ᵻ": ("IH",), "i": ("IY",), "iː": ("IY",), "ɛ": ("EH",), "e": ("EH",),
    "æ": ("AE",), "a": ("AE",), "ə": ("AH",), "ɐ": ("AH",), "ʌ": ("AH",), "ɑː": ("AA",),
    "ɑ": ("AA",), "ɒ": ("AA",), "ɔː": ("AO",), "ɔ": ("AO",), "oː": ("AO",), "ʊ": ("UH",),
    "uː": ("UW",), "u": ("UW",), "o": ("OW",), "oʊ": ("OW",), "əʊ": ("OW",), "eɪ": ("EY",),
    "aɪ": ("AY",), "aʊ": ("AW",), "ɔɪ": ("OY",), "ɚ": ("ER",), "ɜː": ("ER",), "ɜ": ("ER",),
    "əl": ("AH", "L"), "n̩": ("AH", "N"), "ɔːɹ": ("AO", "R"), "oːɹ": ("AO", "R"),
    "ɑːɹ": ("AA", "R"), "ɛɹ": ("EH", "R"), "ɪɹ": ("IH", "R"), "ʊɹ": ("UH", "R"),
    "iə": ("IY", "AH"), "aɪɚ": ("AY", "ER"), "aɪə": ("AY", "AH"), "eə": ("EH", "R"),
}
_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW",
                     "OY", "UH", "UW"})
_STRESS = {"ˈ": "1", "ˌ": "2"}


@lru_cache(maxsize=4096)
def guess(word: str) -> tuple[str, ...] | None:
    """ARPAbet phones with stress digits for ``word`` ("Hidell" -> HH AY1 D AH0 L), or None
    when eSpeak NG gives a phoneme outside the table (a word it reads as foreign)."""
    phones: list[str] = []
    for ipa_word in espeak.phonemes(word, "en-us"):
        for phone in ipa_word:
            stress = "0"
            while phone[:1] in _STRESS:
                stress, phone = _STRESS[phone[0]], phone[1:]
            mapped = _IPA_TO_ARPABET.get(phone)
            if mapped is None:
                return None
            phones += [p + stress if p in _VOWELS else p for p in mapped[:1]]
            phones += [p + "0" if p in _VOWELS else p for p in mapped[1:]]
    return tuple(phones) or None
