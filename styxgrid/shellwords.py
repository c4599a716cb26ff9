"""Shell words, both ways, in linear time: how descriptions quote programs and
arguments.

`split` reads words as a POSIX shell would with no expansion (the rules of
`shlex.split`): blanks separate words, '...' is literal, "..." is literal but
for backslash before a backslash or a double quote, and an unquoted backslash
takes the next character as it is.  Unlike `shlex`, which walks the text one
character at a time in Python (a second per megabyte), it runs in the regular
expression engine, and text without quotes or backslashes is a plain `split`.
`quote` and `join` are `shlex`'s: what they write, `split` reads back exactly.
"""

from __future__ import annotations

import re
from shlex import join, quote

__all__ = ["SplitError", "join", "quote", "split"]

# A whole word, and the parts of a word that holds quotes or backslashes.
# Possessive loops: an unclosed quote fails at once instead of backtracking.
_WORD = re.compile(r"""(?:[^ \t\n\r\f\v'"\\]++|'[^']*+'|"(?:[^"\\]++|\\.)*+"|\\.)++""",
                   re.DOTALL)
BLANKS = " \t\n\r\f\v"      # what separates words: ASCII blanks only, as in a shell
_BLANK_RUN = re.compile(r"[ \t\n\r\f\v]+")
_PART = re.compile(r"""([^'"\\]++)|'([^']*+)'|"((?:[^"\\]++|\\.)*+)"|\\(.)""", re.DOTALL)
_SPECIAL = re.compile(r"""['"\\]""")


class SplitError(ValueError):
    """The text is not a sequence of shell words; the message says why."""


def split(text: str) -> list[str]:
    """The words of `text`."""
    if _SPECIAL.search(text) is None:
        return [w for w in _BLANK_RUN.split(text) if w]
    words = _WORD.findall(text)
    rest = _WORD.sub(" ", text)
    if rest.strip(BLANKS):
        _refuse(text)
    has_special = _SPECIAL.search
    return [_unquote(w) if has_special(w) else w for w in words]


def _unquote(word: str) -> str:
    return "".join(_part(p) for p in _PART.finditer(word))


def _part(m: re.Match) -> str:
    plain, single, double, escaped = m.groups()
    if double is not None:
        if "\\" not in double:
            return double
        # backslashes come in pairs from the left: split at each escaped backslash,
        # undo each escaped quote, join with single backslashes (all in C)
        return "\\".join(p.replace('\\"', '"') for p in double.split("\\\\"))
    return plain if plain is not None else single if single is not None else escaped


def _refuse(text: str) -> None:
    """Name the first character that starts no word: an unclosed quote or a last
    backslash."""
    at = 0
    for m in _WORD.finditer(text):
        if text[at:m.start()].strip(BLANKS):
            break
        at = m.end()
    while text[at] in BLANKS:
        at += 1
    if text[at] == "\\":
        raise SplitError("no character after the last backslash")
    raise SplitError(f"no closing quotation for the {text[at]} at character {at + 1}")
