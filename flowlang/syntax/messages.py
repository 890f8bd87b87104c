"""Syntax errors in words a user knows, not Lark's terminal names."""
from __future__ import annotations

from lark import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

#: How a terminal reads in a message.
_DESCRIPTIONS = {
    "NAME": "a name",
    "PATH": "a field such as `person.score`",
    "STRING": 'a string in quotes',
    "NUMBER": "a number",
    "PERCENT": "a percentage such as `50%`",
    "DATE": "a date such as `2026-12-24`",
    "TIME": "a time such as `09:30`",
    "COMP_OP": "a comparison such as `==` or `>=`",
    "_SEP": "the end of the line",
    "$END": "the end of the file",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "EQUALS": "`=`",
}

_STEP_KEYWORDS = {"WAIT", "SPLIT", "GOTO", "EXIT", "COMPLETE"}
_DECLARATION_KEYWORDS = {"FLOW", "PIPELINE", "FORM", "LINK", "SCHEMA", "ACTION", "EVENT"}
_EXPRESSION_STARTS = {"NOT", "LPAR", "PATH"}
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "fourteen": 14, "thirty": 30}


def describe(expected: set[str], literals: dict[str, str]) -> str:
    """What the parser could have taken, as a phrase: 'a step such as …'."""
    if _STEP_KEYWORDS <= expected:
        return "a step such as `send email`, `wait` or `split`"
    if _DECLARATION_KEYWORDS <= expected:
        return "a declaration: `flow`, `pipeline`, `form`, `link`, `schema`, `action` or `event`"
    if _EXPRESSION_STARTS <= expected:
        return 'a condition such as `person.score >= 50` or `opened email "Welcome"`'
    if expected >= {"NUMBER", "UNTIL", "FOR"}:
        return "a duration such as `3 days`, `until 2026-12-24` or `for CONDITION`"
    if expected == {"STRING"}:
        return "a name in quotes"
    words = []
    for name in sorted(expected, key=_order):
        text = _DESCRIPTIONS.get(name)
        if text is None:
            literal = literals.get(name)
            if literal is None:
                continue
            text = f"`{literal}`"
        if text not in words:
            words.append(text)
    if not words:
        return "something else"
    if len(words) > 6:
        ends = [w for w in words if w in ("the end of the line", "`}`")]
        words = [w for w in words if w not in ends][:6 - len(ends)] + ["…"] + ends
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _order(name: str) -> tuple:
    # keywords first, then values, then punctuation and ends
    if name in ("_SEP", "$END", "RBRACE"):
        return (3, name)
    if name in _DESCRIPTIONS:
        return (1, name)
    return (0, name)


def found(error: UnexpectedInput, text: str) -> str:
    if isinstance(error, UnexpectedToken):
        token = error.token
        if token.type == "$END":
            return "the end of the file"
        if token.type == "_SEP":
            return "the end of the line" if "\n" in token or not token.strip() else "`;`"
        return f"`{token}`"
    if isinstance(error, UnexpectedCharacters):
        return f"`{text[error.pos_in_stream]}`" if error.pos_in_stream < len(text) else "the end"
    return "this"


def _opens_triple(text: str, pos: int) -> bool:
    """Lark reads an unclosed triple quote as an empty string and then an unclosed
    quote: the error sits on the third quote."""
    return text.startswith('"""', pos) or (pos >= 2 and text[pos - 2:pos + 1] == '"""')


def _expected(error: UnexpectedInput) -> set[str]:
    """What the parser could take here. The contextual lexer reports its own state's
    terminals, where keywords hide inside NAME; the parse table knows them all."""
    state = getattr(error, "state", None)
    try:
        return set(state.parse_conf.parse_table.states[state.position])
    except (AttributeError, KeyError, TypeError):
        return set(getattr(error, "expected", None) or getattr(error, "allowed", None) or ())


def message(error: UnexpectedInput, text: str, literals: dict[str, str]) -> tuple[str, str | None]:
    """(message, help) for a syntax error."""
    if isinstance(error, UnexpectedCharacters):
        char = text[error.pos_in_stream] if error.pos_in_stream < len(text) else ""
        if _opens_triple(text, error.pos_in_stream):
            return ('unterminated `"""` string', 'close it with `"""`')
        if char == '"':
            return ("unterminated string",
                    'a "…" string ends on the line where it starts; use """…""" for text over several lines')
        expected = _expected(error)
        return (f"unexpected character `{char}`; expected {describe(expected, literals)}", None)
    assert isinstance(error, UnexpectedToken)
    expected = _expected(error)
    what = found(error, text)
    help_line = None
    token = error.token
    if token.type in ("NAME", "PATH") and str(token) in _NUMBER_WORDS and "NUMBER" in expected:
        help_line = f"write the number in digits: `{_NUMBER_WORDS[str(token)]}`"
    elif expected == {"STRING"} and token.type == "WHEN":
        help_line = 'give the branch a name: `branch "Name" when …`'
    elif token.type == "$END" and "RBRACE" in expected:
        help_line = "a `{` is never closed; add the missing `}`"
    return f"expected {describe(expected, literals)}, found {what}", help_line
