"""Does the transcript say what the audio says? Align it first; recognise where in doubt.

Full recognition with pocketsphinx's language model runs at about 3x real time per core
here, too slow to audit a corpus at 10x real time on two cores. Aligning the *given*
transcript is about 30x real time: the decoder searches a grammar made from the clip's own
words, in order, where every word may also be left out at a small cost::

    0 --w1--> 1 --w2--> 2 ... n-1 --wn--> n        (and each k --(skip)--> k+1)

Words pocketsphinx's dictionary lacks get CMUdict's pronunciation (through
:mod:`neurotts.text.g2p`), or that of a stem plus a regular ending, or of two words run
together; words none of these find are spelled with a loose lattice of each letter's likely
phones, so an unusual name neither counts for nor against the clip. (On the LJSpeech sample,
1.2% of the words are in neither dictionary; before they had pronunciations, they made clean
clips look misaligned.) Two things come out of the alignment:

- ``align_skipped``: the share of the transcript's letters in words the decoder preferred to
  leave out. Audio cut short, or a transcript with words the speaker never said, leaves words
  out; a transcript that fits leaves none.
- ``align_deficit``: the aligned path's acoustic score per 10 ms frame, negated, in nats as
  pocketsphinx's Python interface reports it (pocketsphinx normalises acoustic scores per
  frame against its best-scoring state, so this says how far the transcript's words are from
  the best the model could do), from the first word to the last. Speech the transcript does
  not contain is forced onto the wrong words and scores badly: clean LJSpeech clips lie
  within 0.7 of their corpus median (1.5), clips with another clip's transcript 2.4 or more
  above it. The scoring uses the excess over the corpus median, so a voice or recording the
  acoustic model fits less well overall does not shift every clip.

Clips that reach a warning level (for any reason) are then decoded by the evaluation
recogniser (:class:`neurotts.evaluation.asr.Recognizer`): its character error rate against
the normalised transcript is a second opinion, and its text shows what was heard. On the
clean LJSpeech sample that is 2 clips in 385, so full recognition costs little.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from neurotts.audit.config import TranscriptConfig
from neurotts.evaluation.asr import (
    ASR_SAMPLE_RATE,
    Recognizer,
    char_errors,
    import_optional,
    normalize_text,
)
from neurotts.text import g2p

# Dictionary words: letters with inner apostrophes ("don't", "caxton's"); hyphens split words.
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")
_ALT_PRON = re.compile(r"\(\d+\)$")  # pocketsphinx marks alternative pronunciations "the(2)"
_PHONE_WORD = "phone_"  # dictionary words of one phone each ("phone_k"), for spelled words
# Plausible phones of each letter, for words no dictionary knows. Each letter may also be
# silent. The lattice this makes is loose on purpose: it lets an unusual name take its share
# of the audio without being judged, so its neighbours are not stretched over it.
_LETTER_PHONES = {
    "a": "AE EY AH AA AO", "b": "B", "c": "K S CH", "d": "D", "e": "EH IY AH ER", "f": "F",
    "g": "G JH", "h": "HH", "i": "IH AY IY", "j": "JH", "k": "K", "l": "L", "m": "M",
    "n": "N NG", "o": "AA OW AO AH UW", "p": "P F", "q": "K", "r": "R ER", "s": "S Z SH",
    "t": "T TH DH", "u": "AH UW Y", "v": "V", "w": "W", "x": "K", "y": "Y IY AY", "z": "Z",
}
# Endings CMUdict lacks on a stem it knows ("deceives", "latterly"), as phones to append.
_SUFFIXES = (("'s", ("Z",)), ("s", ("Z",)), ("es", ("IH", "Z")), ("ings", ("IH", "NG", "Z")),
             ("ing", ("IH", "NG")), ("ness", ("N", "AH", "S")), ("ly", ("L", "IY")),
             ("er", ("ER",)), ("ers", ("ER", "Z")))
# pocketsphinx's feature frames per second (its default frame rate).
ASR_FRAME_RATE = 100
# exp() of a segment score below this underflows to 0 in pocketsphinx's Python layer; the
# deficit of such a segment is at least this over its frames.
_UNDERFLOW_NATS = 745.0


class TranscriptChecker:
    """One pocketsphinx aligner (and, on demand, one recogniser) per worker process.

    ``align(pcm, words(normalized))`` and ``recognise(pcm, normalized)`` take 16 kHz int16
    audio ``(n,)`` and the transcript as the text frontend normalised it, and return the
    measures described in the module docstring. Not thread-safe.
    """

    def __init__(self, cfg: TranscriptConfig):
        ps = import_optional("pocketsphinx", "the audit's transcript check")
        self.cfg = cfg
        config = ps.Config(loglevel="FATAL", samprate=str(ASR_SAMPLE_RATE), lm=None,
                           beam=str(cfg.beam), pbeam=str(cfg.pbeam), wbeam=str(cfg.wbeam))
        self._decoder = ps.Decoder(config)
        phones = sorted({p for alts in _LETTER_PHONES.values() for p in alts.split()})
        for k, phone in enumerate(phones):
            self._decoder.add_word(_PHONE_WORD + phone.lower(), phone, k == len(phones) - 1)
        self._search: str | None = None
        self._n_searches = 0
        self._recognizer: Recognizer | None = None

    # -- words -------------------------------------------------------------------------------

    def _known(self, word: str) -> bool:
        """True when the decoder can say ``word``, adding a pronunciation if needed."""
        if self._decoder.lookup_word(word) is not None:
            return True
        phones = derived_pronunciation(word)
        if phones is None:
            return False
        self._decoder.add_word(word, " ".join(re.sub(r"\d", "", p) for p in phones), True)
        return True

    def words(self, normalized: str) -> list[tuple[str, bool]]:
        """Dictionary tokens of a normalised transcript, each with whether it is known."""
        return [(w, self._known(w)) for w in _WORD_RE.findall(normalized.lower())]

    # -- alignment ---------------------------------------------------------------------------

    def _grammar(self, words: list[tuple[str, bool]]) -> list[tuple[Any, ...]]:
        """Transitions of the chain grammar. An unknown word is spelled: one state per
        letter, each with its plausible phones or nothing, so states are renumbered as we go."""
        p_skip = self.cfg.skip_prob
        trans: list[tuple[Any, ...]] = []
        state = 0
        for word, known in words:
            if known:
                trans += [(state, state + 1, 1.0 - p_skip, word), (state, state + 1, p_skip)]
                state += 1
                continue
            start = state
            for letter in word.replace("'", ""):
                alts = [_PHONE_WORD + p.lower() for p in _LETTER_PHONES[letter].split()]
                trans += [(state, state + 1, 0.5 / len(alts), p) for p in alts]
                trans.append((state, state + 1, 0.5))
                state += 1
            trans.append((start, state, p_skip))
        return trans

    def _decode(self, pcm: np.ndarray, trans: list[tuple[Any, ...]], final: int) -> bool:
        """Decode ``pcm`` with a new grammar; the previous one is dropped. False: no path."""
        dec = self._decoder
        self._n_searches += 1
        name = f"clip{self._n_searches}"
        dec.add_fsg(name, dec.create_fsg(name, 0, final, trans))
        dec.activate_search(name)
        if self._search is not None:
            dec.remove_search(self._search)
        self._search = name
        # Feature state (the cepstral mean) must not carry over from the previous clip.
        dec.reinit_feat()
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        dec.end_utt()
        return dec.hyp() is not None

    def align(self, pcm: np.ndarray, words: list[tuple[str, bool]]) -> dict[str, Any]:
        """Alignment measures of ``pcm`` (16 kHz int16) against ``words``."""
        letters = "".join(w for w, known in words if known).replace("'", "")
        unknown = [w for w, known in words if not known]
        out: dict[str, Any] = {"align_words": len(words), "unknown_words": unknown}
        trans = self._grammar(words)
        final = max((t[1] for t in trans), default=0)
        if not letters or not self._decode(pcm, trans, final):
            # No path through the grammar: the audio cannot hold these words at all.
            return {**out, "align_failed": bool(letters), "align_skipped": 1.0 if letters else 0.0,
                    "align_deficit": None, "align_poor_share": None}
        segs = list(self._decoder.seg())
        spoken = [i for i, s in enumerate(segs) if not _is_filler(s.word)]
        said = [_ALT_PRON.sub("", segs[i].word) for i in spoken]
        said_letters = "".join(w for w in said if not w.startswith(_PHONE_WORD)).replace("'", "")
        out.update(align_failed=False, align_skipped=1.0 - len(said_letters) / len(letters))
        if not spoken:
            return {**out, "align_deficit": None, "align_poor_share": None}
        # From the first word to the last, fillers (pauses, breaths) in between included.
        frames, total, poor = 0, 0.0, 0
        for s in segs[spoken[0] : spoken[-1] + 1]:
            if s.word.startswith(_PHONE_WORD):
                continue  # a spelled unknown word: no pronunciation to judge it by
            n = s.end_frame - s.start_frame + 1
            nats = -math.log(s.ascore) if s.ascore > 0 else _UNDERFLOW_NATS
            frames, total = frames + n, total + nats
            poor += n if nats / n > self.cfg.poor_deficit else 0
        if frames == 0:  # only spelled unknown words: nothing to judge
            return {**out, "align_deficit": None, "align_poor_share": None}
        return {**out, "align_deficit": total / frames, "align_poor_share": poor / frames}

    def word_times(self, pcm: np.ndarray, words: list[tuple[str, bool]]
                   ) -> list[tuple[float, float] | None]:
        """Where each of ``words`` lies in ``pcm`` (16 kHz int16), from the same forced
        alignment as :meth:`align`: (start, end) in seconds per word, None for a word the
        decoder left out or one it had to spell (no dictionary pronunciation: its letters'
        phones are too loose to place it), and all None when no path fits."""
        trans = self._grammar(words)
        final = max((t[1] for t in trans), default=0)
        out: list[tuple[float, float] | None] = [None] * len(words)
        if not trans or not self._decode(pcm, trans, final):
            return out
        frame_s = 1.0 / ASR_FRAME_RATE
        segs = [s for s in self._decoder.seg() if not _is_filler(s.word)]
        k = 0  # next segment
        for i, (word, known) in enumerate(words):
            if not known:  # its spelled phones, up to the next dictionary word
                while k < len(segs) and segs[k].word.startswith(_PHONE_WORD):
                    k += 1
            elif k < len(segs) and _ALT_PRON.sub("", segs[k].word) == word:
                out[i] = (segs[k].start_frame * frame_s, (segs[k].end_frame + 1) * frame_s)
                k += 1
        return out

    # -- recognition -------------------------------------------------------------------------

    def recognise(self, pcm: np.ndarray, normalized: str) -> dict[str, Any]:
        """What the recogniser hears and its character error rate against the transcript."""
        if self._recognizer is None:
            self._recognizer = Recognizer()
        heard = self._recognizer.transcribe(pcm, ASR_SAMPLE_RATE)
        ref = normalize_text(normalized)
        rate = char_errors([ref], [heard]).rate if ref else 0.0
        return {"asr_text": heard, "transcript_cer": rate}


def derived_pronunciation(word: str) -> list[str] | None:
    """CMUdict's pronunciation of ``word``, else of a stem plus a regular ending
    ("deceives" = deceive + Z), else of two dictionary words run together ("woodcutters" =
    wood + cutter + Z). None when none of these is found."""
    phones = g2p.lookup(word) or _stem_and_ending(word)
    if phones is not None:
        return phones
    for cut in range(3, len(word) - 2):
        head = g2p.lookup(word[:cut])
        tail = (g2p.lookup(word[cut:]) or _stem_and_ending(word[cut:])) if head else None
        if head is not None and tail is not None:
            return [*head, *tail]
    return None


def _stem_and_ending(word: str) -> list[str] | None:
    """A dictionary stem (or stem + "e") and a regular ending, or None."""
    for ending, extra in _SUFFIXES:
        stem = word[: -len(ending)]
        if not word.endswith(ending) or len(stem) < 3:
            continue
        base = g2p.lookup(stem) or (g2p.lookup(stem + "e") if ending[0] in "ei" else None)
        if base is not None:
            return [*base, *extra]
    return None


def _is_filler(word: str) -> bool:
    """Silence, breath and noise tokens (``<sil>``, ``[NOISE]``, ``+breath+``) and the
    sentence marks ``<s>``/``</s>``."""
    return word.startswith(("<", "[", "+"))
