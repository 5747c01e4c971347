"""IPA frontend: eSpeak NG through the bundled library, per-language number reading, symbols."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("espeakng_loader")
pytest.importorskip("num2words")

from neurotts.text import espeak, ipa  # noqa: E402
from neurotts.text.symbols import SPACE  # noqa: E402


def test_languages_resolve_and_unknown_lists_all():
    assert espeak.resolve_language("de") == "de"
    assert espeak.resolve_language("EN_us") == "en-us"
    assert ipa.language("fr").num2words == "fr"
    assert ipa.language("pt-br").num2words == "pt_BR"
    with pytest.raises(espeak.EspeakError) as err:
        ipa.language("klingon")
    message = str(err.value)
    assert "\n" not in message and "unknown language 'klingon'" in message
    assert ", de," in message and ", es," in message and ", fr," in message


@pytest.mark.parametrize(("lang", "raw", "said"), [
    ("de", "Es kostet 12,50 € im Jahr 1865.", "zwölf Euro und fünfzig Cent im Jahr achtzehnhundertfünfundsechzig"),
    ("de", "3,5 von 1.000", "drei Komma fünf von eintausend"),
    ("es", "Cuesta 20 $ y 1.500 personas", "Cuesta veinte dólares y mil quinientos personas"),
    ("fr", "Ça coûte 10 €.", "Ça coûte dix euros."),
    ("en", "Dr. Smith paid $3.50.", "Doctor Smith paid three dollars, fifty cents."),
])
def test_numbers_are_read_in_the_language(lang, raw, said):
    assert said in ipa.normalize(raw, ipa.language(lang))


def test_phonemes_keep_punctuation_and_split_stress():
    lang = ipa.language("es")
    symbols = ipa.phonemize("¿Dónde está? Aquí, sí.", lang)
    assert symbols[0] == "¿" and symbols[-1] == "."
    assert "?" in symbols and "," in symbols
    assert "ˈ" in symbols and not any(s.startswith("ˈ") and len(s) > 1 for s in symbols)
    words = " ".join(symbols).split(f" {SPACE} ")
    assert len(words) == 4  # dónde / está? / aquí, / sí.
    assert ipa.is_speakable(symbols) and not ipa.is_speakable(["?", SPACE, "ˈ"])


def test_french_elision_mark_is_not_a_symbol():
    symbols = ipa.phonemize("Je ne sais pas.", ipa.language("fr"))
    assert all("-" not in s for s in symbols)
    assert symbols[:2] == ["ʒ", "ə"]


def test_inventory_is_sorted_and_starts_with_the_fixed_symbols():
    inv = ipa.inventory(["t", "a", ",", "ˈ", "a", SPACE, "tʃ"])
    assert inv[:3] == ["_", "~", " "] and inv[3] == ","
    assert inv[4:] == sorted(["t", "a", "ˈ", "tʃ"])
    assert ipa.inventory(reversed(["t", "a", ",", "ˈ", "tʃ"])) == inv


def test_dropped_names_symbols_nothing_reads():
    assert ipa.dropped("a # b ~ c, l'homme") == {"#", "~"}


def test_synthesize_makes_speech():
    wav, sr = espeak.synthesize("Guten Tag.", "de")
    assert sr == 22050 and wav.dtype == np.int16
    assert 0.3 < wav.size / sr < 3.0 and np.abs(wav).max() > 1000


def test_spoken_corpus_reads_as_ljspeech(tmp_path):
    from neurotts.data.formats import read_corpus
    from neurotts.data.spoken import write_spoken_corpus

    root = write_spoken_corpus(tmp_path / "es", "es", ("Hola, mundo.", "Dos y 3 son 5."))
    corpus = read_corpus(root)
    assert corpus.format == "ljspeech" and [r.id for r in corpus.rows] == ["es-0001", "es-0002"]
    info = sf.info(str(corpus.rows[1].audio))
    assert info.samplerate == 22050 and info.frames > 0.5 * 22050


def test_ipa_frontend_fits_its_table_to_a_corpus():
    from neurotts.text.frontend import TextConfig, TextError, TextFrontend, TextReport

    fe = TextFrontend(TextConfig("ipa", "de"))
    with pytest.raises(TextError, match="no symbol table yet"):
        fe.encode("Hallo.")
    texts = ["Guten Tag.", "Es kostet 3 €!"]
    symbol_lists = [fe.to_symbols(fe.normalize(t)) for t in texts]
    fitted = fe.fitted(symbol_lists)
    assert fitted.table.to_list() == ipa.inventory(s for lst in symbol_lists for s in lst)
    normalized, symbols, ids = fitted.encode("Es kostet 3 €!")
    assert normalized == "Es kostet drei Euro!" and symbols == symbol_lists[1]
    assert fitted.decode(ids) == symbols
    # Rebuilt from the saved list (a store, a checkpoint): the same ids.
    again = TextFrontend.from_symbols(TextConfig("ipa", "de"), fitted.table.to_list())
    assert again.encode("Es kostet 3 €!")[2] == ids
    # A phoneme the corpus never had is dropped and reported, not an error.
    report = TextReport()
    again.to_symbols("Zürich", report)
    assert report.dropped


def test_ipa_frontend_config_errors_are_one_line():
    from neurotts.text.frontend import TextConfig, TextError, TextFrontend

    with pytest.raises(TextError, match="text=ipa needs text.language"):
        TextFrontend(TextConfig("ipa"))
    with pytest.raises(TextError, match="English only; for text.language=de use text=ipa"):
        TextFrontend(TextConfig("arpabet", "de"))
    with pytest.raises(espeak.EspeakError, match="unknown language 'xx'"):
        TextFrontend(TextConfig("ipa", "xx"))


def test_text_command_shows_each_stage_for_ipa():
    from typer.testing import CliRunner

    from neurotts.cli import app

    result = CliRunner().invoke(app, ["text", "¿Cuesta 20 €?", "text=ipa", "text.language=es"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "¿Cuesta veinte euros?" in lines
    assert "text=ipa: eSpeak NG language 'es', numbers read by num2words 'es'" in lines
    symbols = next(ln for ln in lines if ln.startswith("¿ k w"))
    assert symbols.endswith("? ~") and " | " in symbols
    result = CliRunner().invoke(app, ["text", "hola", "text=ipa", "text.language=xx"])
    assert result.exit_code == 2 and result.output.startswith("error: unknown language 'xx'")
