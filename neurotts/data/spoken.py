"""A small corpus in another language, spoken by eSpeak NG, for tests and demos of ``text=ipa``.

The speech comes from the eSpeak NG library the ``espeakng-loader`` wheel bundles (no system
package, no download). It is formant synthesis, robotic but consistent, which is what a tiny
model needs to learn an alignment in a few steps. The corpus is written in the LJSpeech
layout (``metadata.csv`` with ``ID|text`` and ``wavs/ID.wav``) at eSpeak NG's 22,050 Hz.
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from neurotts.data.ljspeech import DatasetError
from neurotts.text import espeak

# Short everyday sentences, written for this module; numbers and signs exercise the
# language's number reading.
SENTENCES: dict[str, tuple[str, ...]] = {
    "de": (
        "Guten Morgen, wie geht es dir heute?",
        "Der Zug nach Berlin fährt um 8 Uhr ab.",
        "Wir haben 3 Äpfel und 12 Birnen gekauft.",
        "Das Wetter ist schön, die Sonne scheint.",
        "Kannst du mir bitte das Buch geben?",
        "Im Jahr 1989 fiel die Mauer.",
        "Die Kinder spielen im Garten hinter dem Haus.",
        "Ein Kaffee kostet 2,50 €.",
        "Morgen fahren wir an den See.",
        "Ich lese jeden Abend eine Zeitung.",
        "Die Straße ist lang und sehr schmal.",
        "Wo ist der nächste Bahnhof?",
    ),
    "es": (
        "Buenos días, ¿cómo estás hoy?",
        "El tren a Madrid sale a las 8.",
        "Compramos 3 manzanas y 12 peras.",
        "Hace buen tiempo y el sol brilla.",
        "¿Puedes darme el libro, por favor?",
        "En el año 1492 llegaron las naves.",
        "Los niños juegan en el jardín detrás de la casa.",
        "Un café cuesta 2,50 €.",
        "Mañana vamos al lago.",
        "Leo el periódico cada noche.",
        "La calle es larga y muy estrecha.",
        "¿Dónde está la estación más cercana?",
    ),
    "fr": (
        "Bonjour, comment vas-tu aujourd'hui ?",
        "Le train pour Paris part à 8 heures.",
        "Nous avons acheté 3 pommes et 12 poires.",
        "Il fait beau et le soleil brille.",
        "Peux-tu me donner le livre, s'il te plaît ?",
        "En 1789, le peuple a pris la Bastille.",
        "Les enfants jouent dans le jardin derrière la maison.",
        "Un café coûte 2,50 €.",
        "Demain, nous irons au lac.",
        "Je lis le journal chaque soir.",
        "La rue est longue et très étroite.",
        "Où est la gare la plus proche ?",
    ),
}


def write_spoken_corpus(out: Path, language: str, sentences: tuple[str, ...] | None = None) -> Path:
    """Speak ``sentences`` (default: :data:`SENTENCES` of ``language``) into an LJSpeech-layout
    folder ``out``; returns ``out``. Ids are ``<language>-0001``, ``<language>-0002``, ..."""
    if sentences is None:
        if language not in SENTENCES:
            raise DatasetError(f"no built-in sentences for {language!r} (have {', '.join(SENTENCES)}); "
                               "pass sentences")
        sentences = SENTENCES[language]
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, text in enumerate(sentences, start=1):
        uid = f"{language}-{k:04d}"
        wav, sr = espeak.synthesize(text, language)
        sf.write(out / "wavs" / f"{uid}.wav", wav, sr, subtype="PCM_16")
        rows.append(f"{uid}|{text}\n")
    (out / "metadata.csv").write_text("".join(rows), encoding="utf-8")
    return out
