"""Readers for the tagging corpora: CoNLL-U, CoNLL-X, two-column BIO, one character per line.

Every reader returns a list of :class:`Sentence` (tokens, one tag per token, and the line
number where the sentence starts) and rejects a malformed line with :class:`FormatError`,
whose message starts with ``file:line:``. Blank lines (and lines of only whitespace) separate
sentences.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

__all__ = ["FormatError", "Sentence", "CONLL_FIELDS", "read_conllu", "read_conllx",
           "read_columns", "read_chars", "read_lines"]

# The ten columns of CoNLL-U (CoNLL-X names them ID FORM LEMMA CPOSTAG POSTAG FEATS HEAD
# DEPREL PHEAD PDEPREL; the same positions are accepted under either name).
CONLL_FIELDS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
_CONLLX_ALIASES = {"cpostag": "upos", "postag": "xpos", "phead": "deps", "pdeprel": "misc"}


class FormatError(ValueError):
    """A malformed line in a data file; the message starts with ``path:line:``."""

    def __init__(self, path, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line = str(path), line


class Sentence(NamedTuple):
    tokens: tuple        # words (or characters)
    tags: tuple          # one tag per token ('_' where a column is empty)
    line: int            # 1-based line number of the first token


def _lines(path) -> Iterator[tuple[int, str]]:
    if Path(path).is_dir():
        raise IsADirectoryError(21, "is a folder, not a text file", str(path))
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError(path, i, "not UTF-8 text (a binary file?)") from None
            yield i, line.rstrip("\r\n")


def _column_index(column: str) -> int:
    name = _CONLLX_ALIASES.get(column.lower(), column.lower())
    if name not in CONLL_FIELDS:
        raise ValueError(f"unknown CoNLL column {column!r}; choose one of {CONLL_FIELDS}")
    return CONLL_FIELDS.index(name)


_INT = re.compile(r"^[1-9][0-9]*$")
_RANGE = re.compile(r"^([1-9][0-9]*)-([1-9][0-9]*)$")
_EMPTY = re.compile(r"^[0-9]+\.[1-9][0-9]*$")


def _read_conll(path, column: str, conllu: bool) -> list[Sentence]:
    col = _column_index(column)
    kind = "CoNLL-U" if conllu else "CoNLL-X"
    out: list[Sentence] = []
    tokens, tags, start, expect = [], [], 0, 1

    def close():
        nonlocal tokens, tags, expect
        if tokens:
            out.append(Sentence(tuple(tokens), tuple(tags), start))
        tokens, tags, expect = [], [], 1

    for n, line in _lines(path):
        if not line.strip():
            close()
            continue
        if conllu and line.startswith("#"):
            if tokens:
                raise FormatError(path, n, "comment line inside a sentence (comments must "
                                           "come before the first token)")
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise FormatError(path, n, f"expected 10 tab-separated {kind} fields, got "
                                       f"{len(fields)}: {line[:60]!r}")
        tid = fields[0]
        if conllu and _RANGE.match(tid):   # multiword token: its words follow on their own lines
            a, b = map(int, _RANGE.match(tid).groups())
            if a != expect or b < a:
                raise FormatError(path, n, f"multiword token range {tid} does not start at "
                                           f"the next word id {expect}")
            continue
        if conllu and _EMPTY.match(tid):   # empty node of the enhanced graph: not a word
            continue
        if not _INT.match(tid):
            raise FormatError(path, n, f"bad token id {tid!r} (expected an integer"
                                       + (", a range a-b or a decimal a.b)" if conllu else ")"))
        if int(tid) != expect:
            raise FormatError(path, n, f"token id {tid} out of order (expected {expect})")
        if not fields[1]:
            raise FormatError(path, n, "empty FORM field")
        if not tokens:
            start = n
        tokens.append(fields[1])
        tags.append(fields[col])
        expect += 1
    close()
    return out


def read_conllu(path, column: str = "upos") -> list[Sentence]:
    """Words and one column (``upos``, ``xpos``, ``deprel``, ...) of a CoNLL-U file.

    Multiword-token lines (``1-2``) and empty nodes (``1.1``) are skipped: the tokens are the
    syntactic words, which carry the tags. Comment lines (``#``) may precede a sentence."""
    return _read_conll(path, column, conllu=True)


def read_conllx(path, column: str = "upos") -> list[Sentence]:
    """Words and one column of a CoNLL-X file (ten tab-separated fields, integer ids from 1)."""
    return _read_conll(path, column, conllu=False)


_BIO = re.compile(r"^(O|[BIES]-\S+)$")


def read_columns(path, scheme: Optional[str] = "BIO") -> list[Sentence]:
    """``token TAB tag`` per line (a single space also separates when there is no tab),
    sentences split by blank or whitespace-only lines. With ``scheme`` (``"BIO"``, ``"BIOES"``)
    every tag must be ``O`` or ``<prefix>-<type>`` with a prefix of that scheme."""
    prefixes = None if scheme is None else set(scheme.upper()) - {"O"}
    out: list[Sentence] = []
    tokens, tags, start = [], [], 0
    for n, line in _lines(path):
        if not line.strip():
            if tokens:
                out.append(Sentence(tuple(tokens), tuple(tags), start))
            tokens, tags = [], []
            continue
        fields = line.split("\t") if "\t" in line else line.split(" ")
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise FormatError(path, n, f"expected 'token<TAB>tag', got {line[:60]!r}")
        tok, tag = fields
        if prefixes is not None and not (_BIO.match(tag) and (tag == "O" or tag[0] in prefixes)):
            raise FormatError(path, n, f"tag {tag!r} is not O or {'/'.join(sorted(prefixes))}-TYPE")
        if not tokens:
            start = n
        tokens.append(tok)
        tags.append(tag)
    if tokens:
        out.append(Sentence(tuple(tokens), tuple(tags), start))
    return out


def _one_character(chars: str) -> bool:
    """One user-perceived character: one code point, or one followed by combining marks,
    variation selectors or joiners, or a run of U+FFFD (an emoji's surrogate pair decoded
    lossily, as in the published Weibo NER files)."""
    if len(chars) == 1:
        return True
    if set(chars) == {"\ufffd"}:
        return True
    return all(unicodedata.category(c) in ("Mn", "Me", "Cf") for c in chars[1:])


_CHAR_TOKEN = re.compile(r"^(.+?)([0-9]*)$", re.S)


def read_chars(path, scheme: Optional[str] = "BIO", keep_positions: bool = False
               ) -> list[Sentence]:
    """One character per line, ``char[digits] TAB tag`` (the Weibo NER layout: the optional
    digits after the character are its position in an automatically segmented word; a digit
    character with a position reads ``00``). The digits are dropped unless ``keep_positions``
    (then tokens are ``(char, position)``)."""
    rows = read_columns(path, scheme)
    out = []
    for s in rows:
        toks = []
        for i, tok in enumerate(s.tokens):
            ch, rest = _CHAR_TOKEN.match(tok).groups()
            if not _one_character(ch):
                raise FormatError(path, s.line + i, f"expected one character (and optionally "
                                                    f"its position digits), got {tok!r}")
            toks.append((ch, int(rest) if rest else -1) if keep_positions else ch)
        out.append(Sentence(tuple(toks), s.tags, s.line))
    return out


def read_lines(path) -> list[str]:
    """Raw text, one sentence a line (line ends stripped; empty lines kept, so the output of
    a prediction lines up with its input)."""
    return [line for _, line in _lines(path)]

