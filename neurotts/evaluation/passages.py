"""Built-in long passages for stress-testing attention (``neurotts eval texts=long``).

Written for this project. Each is a single paragraph of 200-800 characters, synthesised
without sentence splitting, so the attention has to stay on track far past the ~10 s clips
LJSpeech trains on. They mix the things that break attention in practice: long lists,
repeated words, numbers that expand to many words, and sentences with few pauses.
"""

from __future__ import annotations

LONG_PASSAGES: tuple[str, ...] = (
    # a plain narrative paragraph near LJSpeech's own register.
    "The clerk walked slowly along the corridor of the old court house, carrying a bundle of "
    "papers tied with faded ribbon, and stopped at every door to read the names that had been "
    "painted there many years before by a careful hand.",
    # a long list, where attention tends to skip or repeat items.
    "In the storeroom they found barrels of flour, sacks of rice, boxes of candles, coils of "
    "rope, crates of nails, jars of honey, bundles of firewood, rolls of canvas, tins of oil, "
    "baskets of apples, bags of salt, and a small iron chest that nobody could open, although "
    "each of the men tried his hand at it in turn.",
    # numbers and dates that expand to many spoken words.
    "On the fourteenth of March, 1867, the committee reported that 2,345 prisoners had passed "
    "through the gates in a single year, that the cost of their keep had risen to £4,100, and "
    "that the number of warders, which stood at 36, ought to be increased to at least 52 before "
    "the winter of 1868, when the new wing with its 120 cells would be opened to receive them.",
    # repeated words and near-repeated phrases, a classic cause of loops.
    "He said that the river was high, and the river was fast, and the river was cold, and that "
    "anyone who tried to cross the river that night would be swept away before reaching the far "
    "bank; but the men did not listen, because they had crossed the river many times before, in "
    "every season and in every kind of weather, and they believed that the river could not "
    "surprise them, until the water rose over the stones and the lanterns went out one by one.",
    # one long sentence with few commas, to test endurance and stopping.
    "The report that the inspectors finally delivered to the governor described in great detail "
    "the condition of the buildings and the health of the inmates and the quality of the food "
    "that was served to them each morning and evening and it recommended that the whole system "
    "of management be changed so that the officers who were responsible for the daily routine "
    "would answer to a single authority instead of to the several boards and committees that "
    "had for so long given them contradictory orders and left the most important questions "
    "unanswered from one year to the next.",
    # mixed punctuation, quotations and abbreviations over several sentences.
    "\"We shall begin at once,\" said Dr. Wilson, turning to the young assistant who had followed "
    "him up the stairs. \"Bring the lamp, the notebook, and the small case from the table by the "
    "window; mind the third step, it is loose.\" The assistant did as he was told, and for the "
    "next three hours the two of them examined every page of the ledger, comparing the figures "
    "with the receipts that Mr. Harris had kept in a drawer of his desk. By midnight they were "
    "certain: somebody had altered the accounts on at least seven occasions between January and "
    "June, always by small amounts, and always on a Friday, when the office closed early and "
    "the senior clerk went home to his family in the country.",
)


def passage_ids() -> list[str]:
    return [f"long-{i + 1:02d}" for i in range(len(LONG_PASSAGES))]
