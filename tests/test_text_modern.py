"""Text that people really give a TTS (issue 25): codes, phone numbers, times, versions,
units, equations, roads, initialisms, web addresses, emoji."""

from __future__ import annotations

import warnings

import pytest

from neurotts.text.frontend import TextError, TextFrontend, TextReport, TextWarning
from neurotts.text.normalize import normalize


def spoken(fe: TextFrontend, text: str) -> str:
    """What the characters frontend says, as text ("room one oh one b")."""
    return "".join(fe.encode(text)[1][:-1])


# The issue's table: input -> what the characters frontend now says.
ISSUE_25 = [
    ("Room 101B", "room one oh one b"),
    ("Apt 4B", "apartment four b"),
    ("3D printing", "three d printing"),
    ("Flight AB123", "flight a b one two three"),
    ("2 + 2 = 4", "two plus two equals four"),
    ("Call 555-1234", "call five five five, one two three four"),
    ("Call 911", "call nine one one"),
    ("4:30pm", "four thirty p m"),
    ("Version 2.0.1", "version two point oh point one"),
    ("100km/h", "one hundred kilometers per hour"),
    ("50 kg", "fifty kilograms"),
    ("6 ft 2 in", "six feet two inches"),
    ("Smith Dr.", "smith drive."),
    ("A.D. 1066", "a d ten sixty-six"),
    ("-5°C", "minus five degrees celsius"),
    ("#1", "number one"),
]


@pytest.mark.parametrize(("raw", "expected"), ISSUE_25)
def test_issue_25_table(chars: TextFrontend, raw: str, expected: str) -> None:
    assert spoken(chars, raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("x86 and ARM64", "x eighty-six and A R M sixty-four"),
        ("B-52", "B-fifty-two"),
        ("COVID-19", "COVID-nineteen"),
        ("MP3", "M P three"),
        ("4K video", "four K video"),
        ("5G network", "five G network"),
        ("4.5G", "four point five G"),
        ("1080p", "ten eighty P"),
        ("221B Baker St", "two twenty-one B Baker Street"),
        ("high 5s", "high fives"),
        ("H₂O", "H two O"),
    ],
)
def test_alphanumeric_tokens_keep_their_digits(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Call me at (212) 555-0199.", "Call me at two one two, five five five, zero one nine nine."),
        ("Phone 1-800-555-0199", "Phone one, eight zero zero, five five five, zero one nine nine"),
        ("+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
        ("Call us on 0800 123 456", "Call us on zero eight zero zero, one two three, four five six"),
        ("Dial 999 now.", "Dial nine nine nine now."),
        ("In an emergency call 112.", "In an emergency call one one two."),
        ("911 calls doubled", "nine one one calls doubled"),
        # Away from "call"/"dial", 999 and 112 are quantities.
        ("We sold 999 tickets.", "We sold nine hundred ninety-nine tickets."),
        ("112 people", "one hundred twelve people"),
    ],
)
def test_phone_and_emergency_numbers(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Meet at 10am.", "Meet at ten A M."),
        ("The show starts at 8 p.m. Tickets are $20.",
         "The show starts at eight P M. Tickets are twenty dollars."),
        ("It ran from 9:00 AM to 5:30 PM", "It ran from nine A M to five thirty P M"),
        ("at 12:05 a.m.", "at twelve oh five A M."),
        ("4:30:15", "four thirty and fifteen seconds"),
        ("at 16:00", "at sixteen o'clock"),
        ("4:00:10", "four o'clock and ten seconds"),
    ],
)
def test_clock_times(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Install v3.11 or later", "Install version three point eleven or later"),
        ("Python 3.12.1 is out", "Python three point twelve point one is out"),
        ("release 1.0", "release one point oh"),
        ("The server is at 10.0.0.1", "The server is at ten dot zero dot zero dot one"),
        ("192.168.1.1", "one nine two dot one six eight dot one dot one"),
        # A capital V before bare digits is a serial number, as in LJSpeech.
        ("serial number V510210", "serial number V five one zero two one zero"),
    ],
)
def test_versions_and_addresses(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("It weighs 2.5 kg", "It weighs two point five kilograms"),
        ("It is 1 mi away", "It is one mile away"),
        ("a 10-kg bag", "a ten-kilogram bag"),
        ("run 5 km in 25 min", "run five kilometers in twenty-five minutes"),
        ("speed 60 mph", "speed sixty miles per hour"),
        ("20 Mbps", "twenty megabits per second"),
        ("3 m/s", "three meters per second"),
        ("5'11\"", "five feet eleven inches"),
        ("98.6°F", "ninety-eight point six degrees Fahrenheit"),
        ("a 90° angle", "a ninety degree angle"),
        ("a 500 GB disk", "a five hundred gigabyte disk"),
        ("the 5 kg of flour", "the five kilograms of flour"),
        ("5 m²", "five square meters"),
        ("240V", "two hundred forty volts"),
        ("2.4GHz", "two point four gigahertz"),
        ("50% off", "fifty percent off"),
        # "in" is an inch only glued to its number or after feet.
        ("379 in all", "three hundred seventy-nine in all"),
        ("12in screen", "twelve inches screen"),
        ("a 60-W bulb", "a sixty-watt bulb"),
        ("2 L of milk", "two liters of milk"),
        ("100 W Main St", "one hundred W Main Street"),  # West, not watts
    ],
)
def test_units(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3 x 4 = 12", "three times four equals twelve"),
        ("10 - 3 = 7", "ten minus three equals seven"),
        ("8 / 2 = 4", "eight divided by two equals four"),
        ("x² + y² = z²", "x squared plus y squared equals z squared"),
        ("3 < 5", "three is less than five"),
        ("3*4", "three times four"),
        ("a 2x4", "a two by four"),
        ("10x faster", "ten times faster"),
        # Without "=", a spaced "x" stays a letter (a rifle sight in LJSpeech).
        ("6.5 x 4 x scope", "six point five x four x scope"),
    ],
)
def test_equations(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Dr. Jones lives on Oak Dr.", "Doctor Jones lives on Oak Drive."),
        ("Elm St. is closed", "Elm Street is closed"),
        ("Meet me at 42nd St.", "Meet me at forty-second Street."),
        ("Bury St. Edmunds", "Bury Saint Edmunds"),
        ("Dr Who", "Doctor Who"),
        ("The Dr. said no.", "The Doctor said no."),
        ("Sunset Blvd", "Sunset Boulevard"),
        ("Rm. 12", "Room twelve"),
        ("Chapter 3, pp. 45-67", "Chapter three, pages forty-five to sixty-seven"),
        ("the U.S. Army", "the U S Army"),
        ("in the U.K.", "in the U K."),
        ("a Ph.D. student", "a P H D student"),
        ("J.R.R. Tolkien", "J R R Tolkien"),
    ],
)
def test_abbreviations_in_context(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("email jane_doe@mail.example.org",
         "email jane underscore doe at mail dot example dot org"),
        ("visit www.example.com", "visit W W W dot example dot com"),
        ("https://neurotts.dev/docs", "neurotts dot dev slash docs"),
        ("@neurotts", "at neurotts"),
        ("#MeToo", "hashtag MeToo"),
        ("No #2 pencil", "No number two pencil"),
        ("C++ and R&D", "C plus plus and R and D"),
    ],
)
def test_web_and_signs(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("café in Zürich", "cafe in Zurich"),
        ("½ cup", "one half cup"),
        ("2½ cups", "two and a half cups"),
        ("«hi» — he said…", '"hi" - he said...'),
        ("→ next", "to next"),
        ("50¢ or ¥500", "fifty cents or five hundred yen"),
        ("soft\u00adhyphen and zero\u200dwidth", "softhyphen and zerowidth"),
    ],
)
def test_unicode_is_read_or_silent(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


# -- what cannot be read is reported, never spelled or silently lost ----------------------------


def test_emoji_are_dropped_and_named(chars: TextFrontend) -> None:
    report = TextReport()
    normalized, symbols, _ = chars.encode("I love it ❤️ 👍🏽", report)
    assert "".join(symbols[:-1]) == "i love it"
    assert set(report.dropped) == {"❤", "👍"}  # the variation selector and skin tone are silent
    (line,) = report.messages("characters")
    assert "U+2764 HEAVY BLACK HEART" in line and "U+1F44D THUMBS UP SIGN" in line


def test_emoji_only_line_is_an_error_naming_them(chars: TextFrontend) -> None:
    with pytest.raises(TextError, match=r"U\+1F600 GRINNING FACE"):
        chars.encode("😀🎉", TextReport())


def test_emoji_warn_without_a_report(chars: TextFrontend) -> None:
    with pytest.warns(TextWarning, match="PARTY POPPER"):
        chars.encode("party 🎉")


def test_report_messages_cover_both_kinds(arpa: TextFrontend) -> None:
    report = TextReport()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arpa.encode("zqxv ★", report)
    assert report.messages("arpabet") == [
        "dropped characters not in the 'arpabet' symbol set: '★' (U+2605 BLACK STAR)",
        "not in CMUdict, said by letter-to-sound: zqxv = Z IY2 K Y UW2 EH2 K S V IY1",
    ]
    assert TextReport().messages("arpabet") == []


# -- ARPAbet: letters and heterophones ----------------------------------------------------------


def phones(fe: TextFrontend, text: str) -> list[str]:
    """Each word's phones ("R EH1 D"), for text whose words are separated by spaces."""
    symbols = fe.encode(text)[1][:-1]
    joined = " ".join("|" if s == " " else s for s in symbols)
    return [" ".join(s.lstrip("@") for s in w.split() if s.startswith("@")) for w in joined.split(" | ")]


def test_read_opening_a_clause_is_present_tense(arpa: TextFrontend) -> None:
    words = phones(arpa, "He read the book; now read it again.")
    assert words[1] == "R EH1 D" and words[5] == "R IY1 D"
    assert phones(arpa, '"Read it," he said.')[0] == "R IY1 D"
    # After a comma a list of past actions goes on: no cue.
    assert phones(arpa, "He came in, read the note.")[3] == "R EH1 D"


@pytest.mark.parametrize(
    ("text", "index", "expected"),
    [
        ("A man.", 0, "AH0"),  # the article
        ("A.D. 1066", 0, "EY1"),  # spelled: "A D ten sixty-six"
        ("Flight AB123", 1, "EY1"),
        ("Apt 4A", 2, "EY1"),
        ("He got an A.", 3, "EY1"),
    ],
)
def test_capital_a_is_a_letter_unless_an_article(arpa: TextFrontend, text: str, index: int,
                                                 expected: str) -> None:
    assert phones(arpa, text)[index] == expected
