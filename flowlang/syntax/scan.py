"""A light scan of the raw text that knows strings, comments and braces.

Error recovery uses it to split a file into top-level declarations and to find
the extent of a broken statement without trusting the parser.
"""
from __future__ import annotations

import re

# Strings count only when they are closed: an unclosed quote is one character,
# so that the braces after it on its line still count (they are what the user
# meant to write).
_TOKENS = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|"|#[^\n]*|[{}\n]',
                     re.S)
_DECLARATION = re.compile(r"[ \t]*(flow|pipeline|form|link|schema|action|event)\b")


def braces(text: str, start: int = 0, end: int | None = None):
    """Yield (offset, char) for each `{`, `}` and newline outside strings and comments."""
    for match in _TOKENS.finditer(text, start, len(text) if end is None else end):
        char = match.group()
        if char in "{}\n":
            yield match.start(), char


def declaration_starts(text: str) -> list[int]:
    """Line indexes (0-based) where a top-level declaration starts: a line, outside
    any string, whose first word is a declaration keyword, at depth 0 or in column 0
    (so that a missing `}` does not swallow the declarations after it)."""
    lines = text.split("\n")
    starts: list[int] = []
    depth = 0
    line = 0

    def starts_declaration(number: int) -> bool:
        content = lines[number]
        if _DECLARATION.match(content) and (depth == 0 or not content[:1].isspace()):
            starts.append(number)
            return True
        return False

    if starts_declaration(0):
        depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "\n":
            line += 1
            if starts_declaration(line):
                depth = 0
        elif token == "{":
            depth += 1
        elif token == "}":
            depth = max(0, depth - 1)
        elif token.startswith('"'):
            line += token.count("\n")  # lines inside a string never start anything
    return starts
