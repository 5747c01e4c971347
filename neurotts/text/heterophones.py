"""Heterophones: words written alike and said two ways ("read", "live", "lead", "close").

CMUdict lists each reading of such a word but cannot choose between them, and its first entry
is often the wrong one for the commonest use ("read" R EH1 D, the past tense, for "I will read
it"). Here the neighbouring words choose, where a simple cue is reliable:

- "to", a modal or a do-form before the word makes it a verb ("will read" R IY1 D,
  "to live" L IH1 V, "to record" R AH0 K AO1 R D); for most verbs a personal pronoun does too
  ("we live", "I object");
- a determiner before it makes it a noun ("the suspect" S AH1 S P EH2 K T, "a permit");
- a fixed companion picks the other sense ("lead poisoning" L EH1 D, "tear gas" T IH1 R,
  "close to" K L OW1 S, "close the door" K L OW1 Z);
- "read" opening a clause, alone or after "now", "then", "please"..., is an imperative and
  so present tense ("He read the book; now read it again": R EH1 D, then R IY1 D), since a
  past tense needs a subject before it.

With no cue a word keeps its default: the reading that is more frequent in running text
(CMUdict's first entry unless the table says otherwise, e.g. "wind" is the air, "wound" the
injury). Every reading in the table is one of CMUdict's own pronunciations of the word; a test
checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Cue words, compared in lowercase.
INFINITIVE = frozenset(
    "to will would shall should can could may might must cannot do does did don't doesn't "
    "didn't won't wouldn't can't couldn't shouldn't mustn't let's please i'll you'll we'll "
    "they'll he'll she'll it'll".split()
)
# Words after which "read" is the past participle ("had read", "was read").
PERFECT = frozenset(
    "have has had having i've you've we've they've was were been be being is are am already".split()
)
# Subject and object pronouns; "her" is left out because it is also a determiner ("her record").
PRONOUNS = frozenset("i you we they he she it who him them me us".split())
DETERMINERS = frozenset(
    "a an the this these those his her its their our my your no every each any whose".split()
)
_VERB_CUES = INFINITIVE | PRONOUNS


@dataclass(frozen=True)
class WordContext:
    """Where a word stands: its neighbours (lowercase; None at a text edge or across
    punctuation) and whether it opens a clause (see ``frontend._opens_clause``)."""

    prev: str | None = None
    following: str | None = None
    opens_clause: bool = False


@dataclass(frozen=True)
class Reading:
    """One pronunciation and the neighbours that select it."""

    phones: str  # ARPAbet with stress, as CMUdict writes it
    after: frozenset[str] = frozenset()  # the previous word is one of these
    before: frozenset[str] = frozenset()  # or the next word is one of these
    opens_clause: bool = False  # or the word opens a clause (an imperative)

    def matches(self, context: WordContext) -> bool:
        return (context.prev in self.after or context.following in self.before
                or (self.opens_clause and context.opens_clause))


@dataclass(frozen=True)
class Heterophone:
    default: str  # the reading when no cue matches
    readings: tuple[Reading, ...]  # tried in order; the first whose cue matches wins


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _verb_shift(default: str, verb: str, noun: str | None = None,
                verb_cues: frozenset[str] = _VERB_CUES) -> Heterophone:
    """A noun/adjective and a verb told apart by stress ("the object" / "I object")."""
    readings = [Reading(noun, after=DETERMINERS)] if noun else []
    return Heterophone(default, (*readings, Reading(verb, after=verb_cues)))


_LEAD_METAL = _words(
    "pipe pipes poisoning paint pencil pencils bullet bullets shot weight weights ore mine mines "
    "content fragment fragments core slug slugs particles smear sinker sinkers roof sheet sheets "
    "oxide acetate sulfate sulphate glass crystal alloy foil shielding apron soldiers"
)
_CLOSE_ADJECTIVE_BEFORE = _words(
    "to by friend friends range call relative relatives attention proximity contact together "
    "behind enough associate associates quarters watch look examination relationship relations "
    "ties second family personal"
)
_CLOSE_ADJECTIVE_AFTER = _words(
    "very too so as quite fairly rather more most come came comes coming stay stayed get got "
    "getting draw drew hold held keep kept sit sat stand stood follow followed a"
)

HETEROPHONES: dict[str, Heterophone] = {
    "read": Heterophone("R EH1 D", (Reading("R IY1 D", after=INFINITIVE, opens_clause=True),
                                    Reading("R EH1 D", after=PERFECT))),
    "live": Heterophone("L AY1 V", (Reading("L IH1 V", after=_VERB_CUES | _words(
        "not long still never always that which people")),)),
    "lives": Heterophone("L IH1 V Z", (Reading("L AY1 V Z", after=DETERMINERS | _words(
        "of many two three four five six seven eight nine ten hundred hundreds thousand "
        "thousands millions human innocent save saved saving lost losing cost claimed own "
        "private personal daily whole double other")),)),
    "lead": Heterophone("L EH1 D", (
        Reading("L EH1 D", after=_words("of with molten red white"), before=_LEAD_METAL),
        Reading("L IY1 D", after=_VERB_CUES | _words("a took take taking"),
                before=_words("to us them him me you into away off")),
    )),
    "wind": Heterophone("W IH1 N D", (Reading("W IH1 N D", after=DETERMINERS),
                                      Reading("W AY1 N D", after=_VERB_CUES, before=_words("up")))),
    "winds": Heterophone("W IH1 N D Z", (
        Reading("W IH1 N D Z", after=DETERMINERS),
        Reading("W AY1 N D Z", after=_words("he she it who which that road river path stream"),
                before=_words("up through its along")),
    )),
    "wound": Heterophone("W UW1 N D", (Reading("W AW1 N D", before=_words("up around round")),)),
    "tear": Heterophone("T EH1 R", (Reading("T IH1 R", after=_words("single"), before=_words(
        "gas gases drop drops duct ducts stained streaked rolled ran fell trickled welled")),)),
    "tears": Heterophone("T IH1 R Z", (Reading("T EH1 R Z", after=_words(
        "he she it who which that"), before=_words("apart off open")),)),
    "close": Heterophone("K L OW1 S", (
        Reading("K L OW1 S", after=_CLOSE_ADJECTIVE_AFTER, before=_CLOSE_ADJECTIVE_BEFORE),
        Reading("K L OW1 Z", after=_VERB_CUES, before=DETERMINERS | _words("it them him down of")),
    )),
    "use": _verb_shift("Y UW1 S", "Y UW1 Z"),
    "record": _verb_shift("R EH1 K ER0 D", "R AH0 K AO1 R D"),
    "present": _verb_shift("P R EH1 Z AH0 N T", "P R IY0 Z EH1 N T"),
    "object": _verb_shift("AA1 B JH EH0 K T", "AH0 B JH EH1 K T"),
    "desert": _verb_shift("D EH1 Z ER0 T", "D IH0 Z ER1 T"),
    "suspect": _verb_shift("S AH1 S P EH2 K T", "S AH0 S P EH1 K T",
                           verb_cues=_VERB_CUES | _words("not")),
    "subject": _verb_shift("S AH1 B JH IH0 K T", "S AH0 B JH EH1 K T"),
    "perfect": _verb_shift("P ER1 F IH2 K T", "P ER0 F EH1 K T"),
    "permit": _verb_shift("P ER0 M IH1 T", "P ER0 M IH1 T", noun="P ER1 M IH2 T"),
    "refuse": Heterophone("R AH0 F Y UW1 Z", (Reading("R EH1 F Y UW2 Z", after=DETERMINERS | _words(
        "of"), before=_words("collection disposal heap heaps dump pile")),)),
    "produce": _verb_shift("P R AH0 D UW1 S", "P R AH0 D UW1 S",
                           noun="P R OW1 D UW0 S"),
    "conduct": _verb_shift("K AA1 N D AH0 K T", "K AA0 N D AH1 K T"),
    "conflict": _verb_shift("K AA1 N F L IH0 K T", "K AH0 N F L IH1 K T"),
    "contract": _verb_shift("K AA1 N T R AE2 K T", "K AH0 N T R AE1 K T"),
    "project": _verb_shift("P R AA1 JH EH0 K T", "P R AH0 JH EH1 K T"),
    "progress": _verb_shift("P R AA1 G R EH2 S", "P R AH0 G R EH1 S"),
    "rebel": _verb_shift("R EH1 B AH0 L", "R IH0 B EH1 L"),
    "separate": _verb_shift("S EH1 P ER0 IH0 T", "S EH1 P ER0 EY2 T"),
    "estimate": _verb_shift("EH1 S T AH0 M AH0 T", "EH1 S T AH0 M EY2 T"),
    "moderate": _verb_shift("M AA1 D ER0 AH0 T", "M AA1 D ER0 EY2 T"),
    "graduate": _verb_shift("G R AE1 JH AH0 W AH0 T", "G R AE1 JH AH0 W EY2 T"),
    "associate": _verb_shift("AH0 S OW1 S IY0 AH0 T", "AH0 S OW1 S IY0 EY2 T"),
    "content": Heterophone("K AA1 N T EH0 N T", (Reading("K AH0 N T EH1 N T", after=_words(
        "was were is are be been am feel felt remain remained seem seemed quite perfectly not "
        "well"), before=_words("with")),)),
}


def choose(word: str, context: WordContext) -> list[str] | None:
    """Phones of ``word`` chosen by its ``context``, or None when it is not a heterophone."""
    entry = HETEROPHONES.get(word.lower())
    if entry is None:
        return None
    for reading in entry.readings:
        if reading.matches(context):
            return reading.phones.split()
    return entry.default.split()
