"""Grammars of reply layouts: fixed text around free-text fields that never contain given strings.

A reply format is fixed text (numbers, labels, separators) around free text the teacher writes. For a
reply to parse back into the fields it was built from, no field may contain a string the parser splits
on ("Example", "Class label:", "Output:") or one of the request's stop strings (the engine would end the
reply inside the field, and the cut field would pass for a whole one). `field_rx` writes the language
of such text: it builds the Aho-Corasick automaton of the forbidden strings and turns it into a regular
expression by state elimination (Brzozowski's algebraic method), so any set of strings works, including
stop strings that start with a newline inside multi-line fields.

A layout is rendered twice from one syntax tree: `render` writes a regular expression in the subset that
Python's `re` and xgrammar (vLLM's default structured-output backend) read alike, for tests and for
checking replies; `render_ebnf` writes the grammar the engine is sent, each field and each repeated
subexpression as one rule (as one regex the Alpaca layout is half a megabyte). Fields are unbounded
(`*`): xgrammar 0.2.8 computes the token mask of a bounded repetition (`{0,300}`) in seconds per token
on a CPU, of an unbounded one in microseconds.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass

WHITESPACE = " \t\n\r\f\v"


@dataclass(frozen=True)
class CharSet:
    """A set of characters: `chars`, or with `negated` every character except `chars`."""

    chars: frozenset[str]
    negated: bool = False

    @classmethod
    def of(cls, chars: str) -> CharSet:
        return cls(frozenset(chars))

    @classmethod
    def excluding(cls, chars: str) -> CharSet:
        return cls(frozenset(chars), negated=True)

    def __contains__(self, char: object) -> bool:
        return (char in self.chars) != self.negated

    def __and__(self, other: CharSet) -> CharSet:
        if not self.negated and not other.negated:
            return CharSet(self.chars & other.chars)
        if self.negated and other.negated:
            return CharSet(self.chars | other.chars, negated=True)
        pos, neg = (self, other) if not self.negated else (other, self)
        return CharSet(pos.chars - neg.chars)

    def __or__(self, other: CharSet) -> CharSet:
        if not self.negated and not other.negated:
            return CharSet(self.chars | other.chars)
        if self.negated and other.negated:
            return CharSet(self.chars & other.chars, negated=True)
        pos, neg = (self, other) if not self.negated else (other, self)
        return CharSet(neg.chars - pos.chars, negated=True)

    def __sub__(self, other: CharSet) -> CharSet:
        return self & CharSet(other.chars, negated=not other.negated)

    @property
    def empty(self) -> bool:
        return not self.negated and not self.chars


ANY = CharSet(frozenset(), negated=True)
NON_SPACE = CharSet.excluding(WHITESPACE)
LETTERS = CharSet.of(string.ascii_letters)

# Escapes both Python's `re` and xgrammar read alike. xgrammar's `\x` takes every hex digit that follows
# ("\x0a10" is one character), so `\xHH` is only used inside a class, where letters and digits come
# first and never follow it; and '^' never comes first in a class (xgrammar reads a leading escaped
# caret as negation).
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_CLASS_SPECIAL = set("\\]-[^") | set(WHITESPACE)
_LITERAL_SPECIAL = set(".^$*+?()[]{}|\\")


def _class_char(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if char in _CLASS_SPECIAL and ord(char) < 0x80 else char


def _literal(text: str) -> str:
    out = []
    for c in text:
        if c in _NAMED:
            out.append(_NAMED[c])
        elif c in _LITERAL_SPECIAL:
            out.append("\\" + c)
        elif not c.isprintable():
            out.append(f"[\\x{ord(c):02x}]" if ord(c) < 0x100 else c)
        else:
            out.append(c)
    return "".join(out)


def render_class(cls: CharSet) -> str:
    if not cls.negated and len(cls.chars) == 1:
        return _literal(next(iter(cls.chars)))
    if cls.negated and not cls.chars:
        raise ValueError("a field must leave out at least one character (none of our layouts allows all)")
    if cls.negated and cls.chars == {"^"}:
        raise ValueError("a class of every character but '^' cannot be written for xgrammar")
    plain = sorted(c for c in cls.chars if c.isascii() and c.isalnum())
    body = []
    k = 0
    while k < len(plain):  # runs of letters or digits as ranges: a-z, A-Z, 0-9
        j = k
        while j + 1 < len(plain) and ord(plain[j + 1]) == ord(plain[j]) + 1:
            j += 1
        body.append(f"{plain[k]}-{plain[j]}" if j - k >= 2 else "".join(plain[k : j + 1]))
        k = j + 1
    rest = sorted((c for c in cls.chars if not (c.isascii() and c.isalnum())), key=lambda c: (c == "^", c))
    body.extend(_class_char(c) for c in rest)
    return "[" + ("^" if cls.negated else "") + "".join(body) + "]"


# -- a small syntax tree with simplifying constructors (None stands for the empty language) ---------
@dataclass(frozen=True)
class _Set:
    cls: CharSet


@dataclass(frozen=True)
class _Cat:
    parts: tuple[Rx, ...]


@dataclass(frozen=True)
class _Alt:
    options: tuple[Rx, ...]


@dataclass(frozen=True)
class _Star:
    body: Rx


@dataclass(frozen=True)
class _Field:
    """A free-text field (see `field`): a regex by state elimination, a few grammar rules by state."""

    avoid: tuple[str, ...]
    allowed: CharSet
    first: CharSet
    start: str  # the automaton's state after the text before the field
    accepting: frozenset[str]  # the states the field may end in, given what may follow it


Rx = _Set | _Cat | _Alt | _Star | _Field
EPS: Rx = _Cat(())
Var = str | frozenset[str]  # a state of the automaton (a prefix) or a hub (see `Avoider.hub_row`)


def cat(*parts: Rx | None) -> Rx | None:
    flat: list[Rx] = []
    for part in parts:
        if part is None:
            return None
        flat.extend(part.parts if isinstance(part, _Cat) else (part,))
    return flat[0] if len(flat) == 1 else _Cat(tuple(flat))


def alt(*options: Rx | None) -> Rx | None:
    sets: CharSet | None = None
    rest: list[Rx] = []
    for option in options:
        if option is None:
            continue
        for one in option.options if isinstance(option, _Alt) else (option,):
            if isinstance(one, _Set):
                sets = one.cls if sets is None else sets | one.cls
            elif one not in rest:
                rest.append(one)
    merged = ([_Set(sets)] if sets is not None else []) + rest
    if not merged:
        return None
    return merged[0] if len(merged) == 1 else _Alt(tuple(merged))


def star(body: Rx | None) -> Rx:
    if body is None or body == EPS:
        return EPS
    return _Star(body)


def opt(body: Rx | None) -> Rx:
    return alt(EPS, body) or EPS


def lit(text: str) -> Rx:
    return cat(*(_Set(CharSet.of(c)) for c in text)) or EPS


def field(
    avoid: Iterable[str],
    *,
    allowed: CharSet = ANY,
    first: CharSet = NON_SPACE,
    after: str = "",
    before: Iterable[str] = ("",),
) -> Rx:
    """A field of a layout: at least one character, the first in `first`, all in `allowed`, and none of
    `avoid` anywhere in `after + field + b` for each `b` in `before` (words wholly inside `after` or
    `b` are the layout's own). `after` is the layout's text just before the field, `before` lists what
    may follow it ("" = the end of the reply). Fields that differ only in context where it makes no
    difference are equal, so a grammar writes them once."""
    words = tuple(sorted({w for w in avoid if w}))
    auto = avoider(words)
    start = auto.state_after(after)
    states = _reachable(auto, start, allowed)
    # A field may end in a state from which what follows it neither completes a word nor leaves the
    # automaton anywhere but where that text alone would (so the next field starts where it assumes).
    accepting = frozenset(
        state
        for state in states
        if all(
            (end := auto.read_on(state, text)) is not None and (not text or end == auto.state_after(text))
            for text in before
        )
    )
    return _Field(words, allowed, first, start, accepting)


# -- rendering: a regex (Python and xgrammar) and an EBNF grammar (xgrammar) ----------------------------
def render(node: Rx | None) -> str:
    """The regular expression (Python `re` and xgrammar syntax) of `node`."""
    if node is None:
        raise ValueError("the empty language has no regular expression")
    if isinstance(node, _Field):
        return _field_regex(node)
    if isinstance(node, _Set):
        return render_class(node.cls)
    if isinstance(node, _Cat):
        return "".join(
            f"(?:{render(p)})" if isinstance(p, _Alt) and EPS not in p.options else render(p)
            for p in node.parts
        )
    if isinstance(node, _Alt):
        if EPS in node.options:
            others = alt(*(o for o in node.options if o != EPS))
            return _unary(others, "?") if others is not None else ""
        return "|".join(render(o) for o in node.options)
    return _unary(node.body, "*")


def _unary(body: Rx, suffix: str) -> str:
    text = render(body)
    if isinstance(body, _Set):
        return text + suffix
    return f"(?:{text}){suffix}"


def render_ebnf(node: Rx | None) -> str:
    """The same language as an EBNF grammar (xgrammar's GBNF dialect), for the engine.

    Each distinct field is written once, as right-linear rules, one per state of its automaton
    (`f1_2 ::= "" | [^1\\n] f1_0 | "1" f1_1`): xgrammar precomputes almost every token mask of such
    rules and decodes at full speed (about 0.01 ms per mask here), whereas the same field as a
    state-elimination regex (nested stars) leaves most tokens to be checked at every step (about
    250 ms per mask on this CPU), and a layout's regex repeats every field for every item.
    """
    if node is None:
        raise ValueError("the empty language has no grammar")
    names: dict[_Field, str] = {}

    def sub(n: Rx) -> str:
        if isinstance(n, _Field):
            if n not in names:
                names[n] = f"f{len(names) + 1}"
            return names[n]
        return _ebnf_expr(n, sub)

    lines = [f"root ::= {sub(node)}"]
    for spec, name in names.items():
        lines += _field_rules(spec, name)
    return "\n".join(lines) + "\n"


def _ebnf_expr(n: Rx, sub: Callable[[Rx], str]) -> str:
    """One node as EBNF, its children written by `sub`."""
    if isinstance(n, _Field):
        return sub(n)
    if isinstance(n, _Set):
        if not n.cls.negated and len(n.cls.chars) == 1:
            return _ebnf_string(next(iter(n.cls.chars)))
        return render_class(n.cls)
    if isinstance(n, _Cat):
        if not n.parts:
            return '""'
        out: list[str] = []
        run = ""
        for part in n.parts:  # runs of single characters as one quoted string
            if isinstance(part, _Set) and not part.cls.negated and len(part.cls.chars) == 1:
                run += next(iter(part.cls.chars))
                continue
            if run:
                out.append(_ebnf_string(run))
                run = ""
            out.append(f"({sub(part)})" if isinstance(part, _Alt) else sub(part))
        if run:
            out.append(_ebnf_string(run))
        return " ".join(out)
    if isinstance(n, _Alt):
        return " | ".join(sub(o) for o in n.options)
    return f"({sub(n.body)})*"


def _ebnf_string(text: str) -> str:
    out = []
    for c in text:
        if c in _NAMED:
            out.append(_NAMED[c])
        elif c in '"\\':
            out.append("\\" + c)
        elif not c.isprintable():
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c)
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


# -- the automaton of text avoiding a set of strings --------------------------------------------------
@dataclass(frozen=True)
class Avoider:
    """The Aho-Corasick automaton of `words`: states are the prefixes of the words that contain none."""

    words: tuple[str, ...]

    @functools.cached_property
    def prefixes(self) -> frozenset[str]:
        return frozenset({""} | {w[:k] for w in self.words for k in range(len(w) + 1)})

    @functools.cached_property
    def alphabet(self) -> frozenset[str]:
        return frozenset("".join(self.words))

    def forbidden(self, state: str) -> bool:
        return any(state.endswith(w) for w in self.words)

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - see `moves`
    def step(self, state: str, char: str) -> str:
        """The longest suffix of `state + char` that is a prefix of a word ('' for other characters)."""
        text = state + char
        for start in range(len(text) + 1):
            if text[start:] in self.prefixes:
                return text[start:]
        return ""

    def state_after(self, text: str) -> str:
        """The state after reading `text` from the start, whatever words it contains."""
        state = ""
        for char in text:
            state = self.step(state, char)
        return state

    def read_on(self, state: str, text: str) -> str | None:
        """The state after reading `text` from `state`, or None where a word that began before `text`
        ends inside it (words wholly inside `text` are the format's own business)."""
        for count, char in enumerate(text, start=1):
            state = self.step(state, char)
            if any(len(w) > count and state.endswith(w) for w in self.words):
                return None
        return state

    @functools.cached_property
    def states(self) -> tuple[str, ...]:
        return tuple(sorted((p for p in self.prefixes if not self.forbidden(p)), key=lambda p: (-len(p), p)))

    def children(self, state: str) -> list[str]:
        return sorted(
            {p[len(state)] for p in self.prefixes if len(p) == len(state) + 1 and p.startswith(state)}
        )

    def fail(self, state: str) -> str:
        """The longest proper suffix of `state` that is a prefix of a word."""
        return next(state[k:] for k in range(1, len(state) + 1) if state[k:] in self.prefixes)

    def hub_row(self, state: str, allowed: CharSet) -> dict[Var, Rx]:
        """`state`'s moves with every first character of a word taken through one shared hub variable.

        The same as `moves`, written so that state elimination stays linear in the words' length:
        reading a word's first letter from anywhere leads to the same state, so all those edges are
        one edge to a hub (per set of first letters the state itself continues with, nearly always none).
        """
        row: dict[Var, Rx] = {}
        taken: set[str] = set()
        node = state
        while node:  # the Aho-Corasick failure chain: the state's own continuations first
            for char in self.children(node):
                if char in taken:
                    continue
                taken.add(char)
                if char in allowed and not self.forbidden(node + char):
                    row[node + char] = _Set(CharSet.of(char))
            node = self.fail(node)
        firsts = set(self.children(""))
        hub = frozenset(taken & firsts)
        if any(c in allowed and not self.forbidden(c) for c in firsts - hub):
            row[hub] = EPS
        other = allowed - CharSet.of("".join(firsts | taken))
        if not other.empty:
            row[""] = _Set(other)
        return row

    def hub_equation(self, hub: frozenset[str], allowed: CharSet) -> dict[Var, Rx]:
        """The hub: one of the words' first characters (but those in `hub`), and the state it leads to."""
        return {
            c: _Set(CharSet.of(c))
            for c in self.children("")
            if c not in hub and c in allowed and not self.forbidden(c)
        }

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - automata are few, small and kept for the run
    def moves(self, state: str, allowed: CharSet) -> dict[str, CharSet]:
        """Target state -> the allowed characters that lead there from `state` (never a forbidden one)."""
        out: dict[str, CharSet] = {}
        for char in sorted(self.alphabet):
            if char not in allowed:
                continue
            target = self.step(state, char)
            if not self.forbidden(target):
                out[target] = out.get(target, CharSet(frozenset())) | CharSet.of(char)
        other = allowed - CharSet.of("".join(self.alphabet))
        if not other.empty:
            out[""] = out.get("", CharSet(frozenset())) | other
        return out


@functools.lru_cache(maxsize=64)
def avoider(words: tuple[str, ...]) -> Avoider:
    """One automaton per set of words, so its computed moves are shared by every field that avoids them."""
    return Avoider(words)


_START = "\x00start"


def _reachable(auto: Avoider, start: str, allowed: CharSet) -> tuple[str, ...]:
    """The states reachable from `start` (and the root), longest prefixes first."""
    seen = {start, ""}
    todo = [start]
    while todo:
        for target in auto.moves(todo.pop(), allowed):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return tuple(s for s in auto.states if s in seen)


def _field_rules(spec: _Field, name: str) -> list[str]:
    """The field as right-linear EBNF rules: `name` reads the first character, `name_k` is state k."""
    auto = avoider(spec.avoid)
    states = _reachable(auto, spec.start, spec.allowed)
    index = {state: k for k, state in enumerate(states)}

    def alternatives(moves: dict[str, CharSet], accepting: bool) -> str:
        options = ['""'] if accepting else []
        options += [
            f"{_ebnf_expr(_Set(chars), str)} {name}_{index[target]}" for target, chars in moves.items()
        ]
        if not options:
            raise ValueError(f"no text can fill this field (avoiding {list(spec.avoid)})")
        return " | ".join(options)

    lines = [f"{name} ::= {alternatives(auto.moves(spec.start, spec.allowed & spec.first), False)}"]
    lines += [
        f"{name}_{index[state]} ::= {alternatives(auto.moves(state, spec.allowed), state in spec.accepting)}"
        for state in states
    ]
    return lines


@functools.lru_cache(maxsize=256)
def _field_regex(spec: _Field) -> str:
    return f"(?:{render(field_rx(spec))})"  # a group: the field's own alternatives stay inside it


def field_rx(spec: Rx) -> Rx:
    """A field as a plain syntax tree (a regular expression), by state elimination."""
    if not isinstance(spec, _Field):
        raise TypeError("field_rx takes a field (see `field`)")
    auto, allowed = avoider(spec.avoid), spec.allowed
    states = _reachable(auto, spec.start, allowed)
    # Equations X_q = sum(coefficient * X_t) + [q accepting], solved for the root by eliminating the
    # other states (longest prefixes first), then the hubs. The field's start may only read `first`.
    eqs: dict[Var, dict[Var, Rx | None]] = {}
    consts: dict[Var, Rx | None] = {}
    for state in states:
        eqs[state] = dict(auto.hub_row(state, allowed))
        consts[state] = EPS if state in spec.accepting else None
    hubs = {v for row in eqs.values() for v in row if isinstance(v, frozenset)}
    for hub in hubs:
        eqs[hub] = dict(auto.hub_equation(hub, allowed))
        consts[hub] = None
    eqs[_START] = {t: _Set(c) for t, c in auto.moves(spec.start, allowed & spec.first).items()}
    consts[_START] = None
    for var in [*(s for s in states if s != ""), *sorted(hubs, key=sorted)]:
        _eliminate(eqs, consts, var)
    body = cat(star(eqs[""].get("")), consts[""])
    result = alt(cat(eqs[_START].get(""), body), consts[_START])
    if result is None:
        raise ValueError(f"no text can fill this field (avoiding {list(spec.avoid)})")
    return result


def _eliminate(eqs: dict[Var, dict[Var, Rx | None]], consts: dict[Var, Rx | None], state: Var) -> None:
    """Arden's rule on `state`'s own loop, then substitute its equation into every other one."""
    own = eqs.pop(state)
    const = consts.pop(state)
    loop = star(own.pop(state, None))
    own = {t: cat(loop, r) for t, r in own.items()}
    const = cat(loop, const)
    for other, row in eqs.items():
        coef = row.pop(state, None)
        if coef is None:
            continue
        for target, rx in own.items():
            row[target] = alt(row.get(target), cat(coef, rx))
        consts[other] = alt(consts[other], cat(coef, const))
