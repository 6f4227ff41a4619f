"""Judge-free measures of a text that the evol-instruct and magpie rules share: words, stop words,
script, repetition.

Written by hand because each is a line or two over a word list, and the libraries that carry an English
stop-word list (scikit-learn, spaCy, NLTK's downloadable corpus) would add a heavy dependency or a
download for a list of function words. The list below is ours: English articles, pronouns,
prepositions, conjunctions, auxiliaries and the commonest adverbs.
"""

from __future__ import annotations

import re
import unicodedata

ENGLISH_STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves also may might must shall let us it's i'm don't can't
    isn't aren't wasn't weren't won't doesn't didn't i've i'd i'll you're you've we're they're that's
    there's what's here's yes oh well ok okay please
    """.split()  # noqa: SIM905 - a word list reads best as text
)

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased words of any script (letters, with an inner apostrophe); digits and punctuation drop."""
    return [w.casefold() for w in _WORD.findall(text.replace("\u2019", "'"))]


def stopword_share(text: str) -> float:
    """Share of the text's words that are English stop words (0.0 for a text without words)."""
    found = words(text)
    return sum(w in ENGLISH_STOP_WORDS for w in found) / len(found) if found else 0.0


def content_words(text: str) -> list[str]:
    """The words that are not stop words, in order."""
    return [w for w in words(text) if w not in ENGLISH_STOP_WORDS]


def content_share(text: str) -> float:
    """Share of the text's non-space characters that belong to content words (not stop words, not
    punctuation, not symbols): near 0 for a reply of dots, dashes and 'the and of'."""
    total = sum(1 for ch in text if not ch.isspace())
    if not total:
        return 0.0
    return sum(len(w) for w in content_words(text)) / total


def latin_share(text: str) -> float:
    """Share of the text's letters that are Latin script (1.0 for a text without letters)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 1.0
    return sum("LATIN" in unicodedata.name(ch, "") for ch in letters) / len(letters)


def repeat_share(text: str, n: int = 4) -> float:
    """Share of the text's word n-grams that repeat an earlier n-gram of the same text: a runaway loop
    ("and the the the ...", one sentence over and over) scores near 1, ordinary prose near 0."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return (len(grams) - len(set(grams))) / len(grams)
