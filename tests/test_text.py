"""Text frontend: normalisation rules, symbol sets, inline ARPAbet, ids round trips."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from neurotts.text.frontend import TextConfig, TextError, TextFrontend, TextReport, TextWarning
from neurotts.text.normalize import normalize
from neurotts.text.symbols import EOS, PAD, SymbolTable

CONFIG_DIR = Path(__file__).resolve().parents[1] / "neurotts" / "configs" / "text"


# -- normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("He was 12.", "He was twelve."),
        ("1,000 men", "one thousand men"),
        ("there were 199 debtors", "there were one hundred ninety-nine debtors"),
        (
            "6439 persons had been committed",
            "six thousand four hundred thirty-nine persons had been committed",
        ),
        ("upwards of 200,000 writs", "upwards of two hundred thousand writs"),
        ("007", "zero zero seven"),
        ("It fell 5 degrees, to -5.", "It fell five degrees, to minus five."),
    ],
)
def test_cardinals(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("in 1865", "in eighteen sixty-five"),
        ("in 1900", "in nineteen hundred"),
        ("in 1803", "in eighteen oh three"),
        ("in 2000", "in two thousand"),
        ("in 2005", "in two thousand five"),
        ("in the 2000s", "in the two thousands"),
        ("the 1960's", "the nineteen sixties"),
        ("On November 22, 1963,", "On November twenty-two, nineteen sixty-three,"),
        ("1308 prisoners", "one thousand three hundred eight prisoners"),
        ("In 1818 prisoners awaiting trial", "In eighteen eighteen prisoners awaiting trial"),
        ("about 2250 B.C.", "about twenty-two fifty B C."),  # initialisms are spelled (issue 25)
        ("In 605, Nineveh fell", "In six oh five, Nineveh fell"),
    ],
)
def test_years(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("the 1st", "the first"),
        ("the 22nd", "the twenty-second"),
        ("the 9th May", "the ninth May"),
        ("October 15th", "October fifteenth"),
        ("the 103rd", "the one hundred third"),
    ],
)
def test_ordinals(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_decimals() -> None:
    assert normalize("3.5 seconds") == "three point five seconds"
    assert normalize("at 176.9") == "at one hundred seventy-six point nine"
    assert normalize("a .38 caliber revolver") == "a thirty-eight caliber revolver"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$3.50", "three dollars, fifty cents"),
        ("$1.01", "one dollar, one cent"),
        ("$0.50", "fifty cents"),
        ("$170 in a wallet", "one hundred seventy dollars in a wallet"),
        ("$3 million", "three million dollars"),
        ("£200", "two hundred pounds"),
        ("£1", "one pound"),
        ("£1 5s", "one pound five shillings"),
        ("£2 3s. 6d.", "two pounds three shillings six pence"),
        ("£10,500.", "ten thousand five hundred pounds."),
        ("€5", "five euros"),
        ("90%", "ninety percent"),
    ],
)
def test_currency_and_percent(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$2.5M", "two point five million dollars"),
        ("$3.5 trillion", "three point five trillion dollars"),
        ("a $4bn deal", "a four billion dollars deal"),
        ("£10k, €1.2 billion", "ten thousand pounds, one point two billion euros"),
        ("$3.5", "three point five dollars"),  # one decimal digit is not cents
        ("$21.45.", "twenty-one dollars, forty-five cents."),
    ],
)
def test_currency_with_decimals_and_magnitudes(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3/4", "three quarters"),
        ("1/2 of it", "one half of it"),
        ("5/16 inch", "five sixteenths inch"),
        ("2 1/2 miles", "two and a half miles"),
        ("3 1/8", "three and an eighth"),
        ("4 2/3", "four and two thirds"),
        ("9/11", "nine eleven"),  # no fraction people name: two numbers, not glued
        ("24/7", "twenty-four seven"),
        ("and/or", "and or"),
    ],
)
def test_fractions_and_slashes(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("on 12/25/2023.", "on December twenty-five, twenty twenty-three."),
        ("on 25/12/2023", "on December twenty-five, twenty twenty-three"),  # day first
        ("1/5/05", "January five, oh five"),
        ("11/22/63", "November twenty-two, sixty-three"),
        ("2023-12-25", "December twenty-five, twenty twenty-three"),
        ("13/13/2023", "thirteen thirteen twenty twenty-three"),  # not a date
    ],
)
def test_dates_with_slashes(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10^30", "ten to the power of thirty"),
        ("10^30.", "ten to the power of thirty."),
        ("2^-3", "two to the power of minus three"),
        ("x^2 and 5^3", "x squared and five cubed"),
        ("1e30", "one times ten to the power of thirty"),
        ("6.02e23 atoms", "six point zero two times ten to the power of twenty-three atoms"),
        ("1E-5", "one times ten to the power of minus five"),
    ],
)
def test_powers_and_scientific_notation(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_numbers_beyond_inflect_are_read_digit_by_digit() -> None:
    big = "1" + "0" * 39  # 10**39; inflect names numbers only below 10**36
    assert normalize(big) == "one" + " zero" * 39
    assert normalize(f"{big}th") == "one" + " zero" * 38 + " zeroth"
    assert normalize("99" * 20 + ".5 stars").endswith("nine point five stars")
    assert normalize("9" * 36).startswith("nine hundred ninety-nine decillion")
    # Past Python's 4300-digit int() limit, and in every number rule, nothing raises.
    for text in ("7" * 5000, "$" + "7" * 5000, "7" * 5000 + "th", "1/" + "7" * 5000, "1e" + "7" * 5000):
        assert "seven seven" in normalize(text)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("At 4:30 p.m.", "At four thirty P M."),  # initialisms are spelled (issue 25)
        ("at 11:05 a.m.", "at eleven oh five A M."),
        ("at 12:00", "at twelve o'clock"),
    ],
)
def test_times(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Mr. and Mrs. Smith", "Mister and Missus Smith"),
        ("Dr. Perry", "Doctor Perry"),
        ("St. Paul's in Elm St. today", "Saint Paul's in Elm Street today"),
        ("ended at Elm St.", "ended at Elm Street."),
        (
            "Capt. Col. Gen. Lt. Sgt. Rev. Maj.",
            "Captain Colonel General Lieutenant Sergeant Reverend Major.",
        ),
        ("Edwin Walker, Jr., said", "Edwin Walker, Junior, said"),
        ("Messrs. Longman", "Messieurs Longman"),
        ("No. 4 and Route No. 77", "Number four and Route Number seventy-seven"),
        ("Did it? No.", "Did it? No."),
        ("pens, ink, etc.", "pens, ink, et cetera."),
        ("as, e.g., that of", "as, for example, that of"),
        ("E.g. this; i.e. that, viz.: (a)", "For example this; that is that, namely: (a)"),
        ("Smith et al. found, cf. Jones", "Smith et al found, compare Jones"),
        ("No. 12 was there", "Number twelve was there"),
        ("Smith & Wesson", "Smith and Wesson"),
    ],
)
def test_abbreviations(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Henry VIII", "Henry the eighth"),
        ("George III was king", "George the third was king"),
        ("Charles I", "Charles the first"),
        ("Louis XIV", "Louis the fourteenth"),
        ("Chapter IV", "Chapter four"),
        ("CHAPTER XII", "CHAPTER twelve"),
        ("World War II", "World War two"),
        ("John D. Ready", "John D. Ready"),  # an initial, not 500
        ("I said", "I said"),
        ("Washington DC", "Washington DC"),  # only I/V/X numerals become regnal ordinals
    ],
)
def test_roman_numerals(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_labels_codes_and_addresses() -> None:
    assert normalize("Exhibit No. 133") == "Exhibit Number one thirty-three"
    assert normalize("serial number C2766") == "serial number C two seven six six"
    assert normalize("P.O. Box 2915") == "P O Box two nine one five"  # spelled (issue 25)
    assert normalize("at 602 Elsbeth Street") == "at six oh two Elsbeth Street"
    assert normalize("1026 North Beckley Avenue") == "ten twenty-six North Beckley Avenue"


def test_unicode_and_whitespace() -> None:
    assert normalize("Café  naïve\t“quoted” – it’s") == 'Cafe naive "quoted" - it\'s'
    assert normalize("  a \n b  ") == "a b"
    assert normalize("30°") == "thirty degrees"
    assert normalize("a [sic] b") == "a (sic) b"


def test_inline_phones_pass_through_normalisation() -> None:
    assert normalize("{HH AH0 L OW1} 2 worlds") == "{HH AH0 L OW1} two worlds"


# -- symbols ------------------------------------------------------------------------------------


def test_character_symbols(chars: TextFrontend) -> None:
    assert chars.to_symbols("Hi, Bob!") == ["h", "i", ",", " ", "b", "o", "b", "!", EOS]
    table = chars.symbols
    assert table.pad_id == 0 and table.symbols[0] == PAD
    assert table.symbols[table.eos_id] == EOS
    assert not any(s.startswith("@") for s in table.symbols)


def test_arpabet_symbols_cover_stress_and_fallback(arpa: TextFrontend) -> None:
    symbols = arpa.symbols.symbols
    assert {"@AA0", "@AA1", "@AA2", "@HH", "@ZH"} <= set(symbols)
    assert "@AA" not in symbols  # bare vowels never occur in CMUdict pronunciations
    assert set("abcdefghijklmnopqrstuvwxyz") <= set(symbols)
    assert arpa.to_symbols("hello world.") == [
        "@HH", "@AH0", "@L", "@OW1", " ", "@W", "@ER1", "@L", "@D", ".", EOS,
    ]  # fmt: skip


def test_arpabet_possessive_and_initials(arpa: TextFrontend) -> None:
    # "newgate's" is not in CMUdict: derived from "newgate", voiceless T -> S.
    assert arpa.to_symbols("Newgate's")[-3:] == ["@T", "@S", EOS]
    assert arpa.to_symbols("A. Smith")[:2] == ["@EY1", "."]


def test_oov_words_are_spelled_as_letters(arpa: TextFrontend, monkeypatch) -> None:
    # Only where letter-to-sound has no answer (a phoneme outside the ARPAbet table).
    from neurotts.text import lts

    monkeypatch.setattr(lts, "guess", lambda word: None)
    assert arpa.to_symbols("the zqxv") == ["@DH", "@AH0", " ", "z", "q", "x", "v", EOS]


def test_oov_words_are_pronounced_and_reported_with_the_guess(arpa: TextFrontend) -> None:
    report = TextReport()
    assert arpa.to_symbols("the Hidell rifle", report)[3:8] == ["@HH", "@AY1", "@D", "@AH0", "@L"]
    assert report.oov == {"hidell": 1} and report.guesses == {"hidell": "HH AY1 D AH0 L"}
    # All capitals: CMUdict's entry where it has one, eSpeak NG's reading (spelled) where not.
    assert arpa.to_symbols("FBI")[:2] == ["@EH1", "@F"]
    assert arpa.to_symbols("NASA")[:2] == ["@N", "@AE1"]
    assert arpa.to_symbols("NKVD")[-3:] == ["@D", "@IY1", EOS]


def test_inline_arpabet(arpa: TextFrontend) -> None:
    _, symbols, _ = arpa.encode("{HH AH0 L OW1} world")
    assert symbols[:5] == ["@HH", "@AH0", "@L", "@OW1", " "]
    assert arpa.to_symbols("{hh ah0}") == ["@HH", "@AH0", EOS]  # case-insensitive


def test_inline_arpabet_errors(arpa: TextFrontend, chars: TextFrontend) -> None:
    with pytest.raises(TextError, match="'XX9'"):
        arpa.encode("{HH XX9} world")
    with pytest.raises(TextError, match="'AH'"):
        arpa.encode("{HH AH}")  # a vowel without its stress digit
    with pytest.raises(TextError, match="empty"):
        arpa.encode("{ } world")
    with pytest.raises(TextError, match="unbalanced"):
        arpa.encode("{HH AH0 world")
    with pytest.raises(TextError, match="needs symbol_set='arpabet'"):
        chars.encode("{HH AH0 L OW1} world")


# -- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol_set", ["characters", "arpabet"])
def test_ids_round_trip(symbol_set: str) -> None:
    fe = TextFrontend(TextConfig(symbol_set=symbol_set))
    normalized, symbols, ids = fe.encode("Dr. Smith paid $3.50 on the 4th, in 1865!")
    assert (
        normalized
        == "Doctor Smith paid three dollars, fifty cents on the fourth, in eighteen sixty-five!"
    )
    assert ids[-1] == fe.symbols.eos_id
    assert 0 not in ids
    assert fe.decode(ids) == symbols
    assert fe.decode([*ids, 0, 0]) == symbols  # padding is skipped
    assert fe.symbols.to_ids(fe.symbols.to_symbols(ids)) == ids


@pytest.mark.parametrize("symbol_set", ["characters", "arpabet"])
def test_from_symbols_reproduces_ids(symbol_set: str) -> None:
    cfg = TextConfig(symbol_set=symbol_set)
    fe = TextFrontend(cfg)
    saved = fe.symbols.to_list()
    rebuilt = TextFrontend.from_symbols(cfg, saved)
    text = "Mr. Oswald's 2 rifles cost $21.45."
    assert rebuilt.encode(text) == fe.encode(text)
    assert rebuilt.symbols.to_list() == saved and len(rebuilt.symbols) == len(fe.symbols)


def test_from_symbols_keeps_saved_order() -> None:
    # A list saved by an older run, in another order, must keep its own ids.
    cfg = TextConfig(symbol_set="characters")
    saved = TextFrontend(cfg).symbols.to_list()
    shuffled = [saved[0], *reversed(saved[1:])]
    fe = TextFrontend.from_symbols(cfg, shuffled)
    _, symbols, ids = fe.encode("abc")
    assert ids == [shuffled.index(s) for s in symbols]


def test_from_symbols_rejects_bad_lists() -> None:
    chars_cfg = TextConfig(symbol_set="characters")
    arpa_list = TextFrontend(TextConfig(symbol_set="arpabet")).symbols.to_list()
    with pytest.raises(TextError, match="ARPAbet"):
        TextFrontend.from_symbols(chars_cfg, arpa_list)
    with pytest.raises(TextError, match="pad"):
        TextFrontend.from_symbols(chars_cfg, ["a", PAD, EOS])
    with pytest.raises(TextError, match="repeats"):
        SymbolTable([PAD, EOS, "a", "a"])


def test_symbol_table_errors() -> None:
    table = SymbolTable([PAD, EOS, "a"])
    assert len(table) == 3 and table.eos_id == 1 and table.to_ids(["a", EOS]) == [2, 1]
    with pytest.raises(TextError, match="'b'"):
        table.to_ids(["b"])
    with pytest.raises(TextError, match="id 7"):
        table.to_symbols([7])


# -- errors and warnings ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "?!...", "#*"])
@pytest.mark.parametrize("symbol_set", ["characters", "arpabet"])
def test_unspeakable_text_raises(text: str, symbol_set: str) -> None:
    fe = TextFrontend(TextConfig(symbol_set=symbol_set))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TextWarning)
        with pytest.raises(TextError, match="no speakable symbol"):
            fe.encode(text)


def test_unknown_characters_warn_once(chars: TextFrontend) -> None:
    with pytest.warns(TextWarning, match=r"'#\*'") as record:
        _, symbols, _ = chars.encode("a#b*c#")
    assert len(record) == 1
    assert symbols == ["a", "b", "c", EOS]


def test_unknown_symbol_set() -> None:
    with pytest.raises(TextError, match="'klingon'"):
        TextFrontend(TextConfig(symbol_set="klingon"))


@pytest.mark.parametrize("name", ["characters", "arpabet"])
def test_configs_fill_every_field(name: str) -> None:
    cfg = OmegaConf.merge(
        OmegaConf.structured(TextConfig), OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    )
    assert OmegaConf.missing_keys(cfg) == set()
    assert TextFrontend(OmegaConf.to_object(cfg)).cfg.symbol_set == name


# -- heterophones -------------------------------------------------------------------------------


def word_phones(fe: TextFrontend, sentence: str, index: int) -> str:
    """ARPAbet of the ``index``-th word of ``sentence`` (words are separated by spaces)."""
    symbols = fe.to_symbols(sentence)[:-1]
    words = " ".join("|" if s == " " else s for s in symbols).split(" | ")
    return " ".join(s.lstrip("@") for s in words[index].split() if s.startswith("@"))


@pytest.mark.parametrize(
    ("sentence", "index", "expected"),
    [
        ("I will read it.", 2, "R IY1 D"),
        ("She wants to read it", 3, "R IY1 D"),
        ("He had read it", 2, "R EH1 D"),
        ("They live here.", 1, "L IH1 V"),
        ("a live broadcast", 1, "L AY1 V"),
        ("It saved many lives", 3, "L AY1 V Z"),
        ("He lives here", 1, "L IH1 V Z"),
        ("lead poisoning", 0, "L EH1 D"),
        ("This will lead to war", 2, "L IY1 D"),
        ("the lead fragments", 1, "L EH1 D"),
        ("the wind blew", 1, "W IH1 N D"),
        ("to wind the clock", 1, "W AY1 N D"),
        ("the entrance wound", 2, "W UW1 N D"),
        ("it was wound up", 2, "W AW1 N D"),
        ("tear gas", 0, "T IH1 R"),
        ("do not tear it", 2, "T EH1 R"),
        ("she burst into tears", 3, "T IH1 R Z"),
        ("he tears it apart", 1, "T EH1 R Z"),
        ("close the door", 0, "K L OW1 Z"),
        ("very close to him", 1, "K L OW1 S"),
        ("at the close of day", 2, "K L OW1 Z"),
        ("the suspect fled", 1, "S AH1 S P EH2 K T"),
        ("I suspect him", 1, "S AH0 S P EH1 K T"),
        ("the record shows", 1, "R EH1 K ER0 D"),
        ("we record it", 1, "R AH0 K AO1 R D"),
        ("the use of force", 1, "Y UW1 S"),
        ("to use force", 1, "Y UW1 Z"),
        ("a permit", 1, "P ER1 M IH2 T"),
    ],
)
def test_heterophones_follow_their_context(arpa: TextFrontend, sentence: str, index: int,
                                           expected: str) -> None:
    assert word_phones(arpa, sentence, index) == expected


def test_heterophone_context_stops_at_punctuation(arpa: TextFrontend) -> None:
    # "to" ends a clause here; "read" after the comma has no cue and keeps its default.
    assert word_phones(arpa, "I went to, read it", 3) == "R EH1 D"
    assert word_phones(arpa, "I went to read it", 3) == "R IY1 D"


def test_heterophone_readings_are_cmudict_pronunciations() -> None:
    from neurotts.text.g2p import pronouncing_dictionary
    from neurotts.text.heterophones import HETEROPHONES

    cmu = pronouncing_dictionary()
    for word, entry in HETEROPHONES.items():
        known = {" ".join(p) for p in cmu[word]}
        assert entry.default in known, word
        assert {r.phones for r in entry.readings} <= known, word


# -- reports (prepare sums these over a corpus) -------------------------------------------------


def test_report_collects_oov_and_dropped_without_warnings(arpa: TextFrontend) -> None:
    from neurotts.text.frontend import TextReport

    report = TextReport()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the test
        arpa.encode("Zqxv # met zqxv and Blorft*", report)
    assert report.oov == {"zqxv": 2, "blorft": 1}
    assert report.dropped == {"#": 1, "*": 1}


def test_text_command_prints_plain_warning_lines() -> None:
    from typer.testing import CliRunner

    from neurotts.cli import app

    result = CliRunner().invoke(app, ["text", "a zqxv #1e30", "text=arpabet"])
    assert result.exit_code == 0, result.output
    assert "one times ten to the power of thirty" in result.output
    lines = result.output.splitlines()
    assert "warning: dropped characters not in the 'arpabet' symbol set: '#'" in lines
    assert "not in CMUdict, said by letter-to-sound: zqxv = Z IY2 K Y UW2 EH2 K S V IY1" in lines
    assert "TextWarning" not in result.output and ".py:" not in result.output


def test_text_command_reads_numbers_past_inflect() -> None:
    from typer.testing import CliRunner

    from neurotts.cli import app

    result = CliRunner().invoke(app, ["text", "1" + "0" * 39])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "one" + " zero" * 39
