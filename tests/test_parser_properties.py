"""Hostile input never breaks the parser (DESIGN §10).

(a) Random text and token- or character-level mutations of the conformance files:
    `parse_text` always returns a ParseResult, whose diagnostics sit inside the file,
    carry a message in the user's words, and are the same on a second run.
(b) Parse time grows linearly with the text, with and without syntax errors in
    every declaration: a text repeated 10x must take less than 15x as long. Times are
    CPU times of this process, best of several runs, and only ever compared with
    each other, so a busy machine slows both sides alike.
"""
from __future__ import annotations

import gc
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from flowlang import nodes as n
from flowlang.syntax import ParseResult, parse_text
from flowlang.syntax.parser import bare_lark

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE_OK = REPO.parent / "shared" / "conformance" / "ok"
OK_TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(CONFORMANCE_OK.glob("*.flow"))}

pytestmark = pytest.mark.skipif(not OK_TEXTS, reason=f"no conformance cases in {CONFORMANCE_OK}")

#: A rough lexer for mutations: strings, comments, literals, words, operators, spaces, any char.
TOKEN = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*'
                   r"|\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}|-?\d+(?:\.\d+)?%?"
                   r"|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
                   r"|==|!=|<=|>=|\r?\n|[ \t]+|.", re.S)


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


#: Tokens to insert: everything the conformance files use, and a few hostile extras.
HOSTILE = ['"', '"""', "{", "}", "[", "]", "(", ")", ";", "\n", "\r", "\t", "@", "\\", "%", ":",
           "=", ",", ".", "-", "\x00", "\ufeff", "é", "😀", "#", "25:00", "2026-02-30", "150%",
           "3 fortnights", '"\\q"', '"""\n', "9" * 40, "flow", "wait", "split", "exit", "on",
           "not", "in", "is", "set", "until", "for", "branch", "when", "otherwise", "x:"]
POOL = sorted({t for text in OK_TEXTS.values() for t in tokens(text)} | set(HOSTILE))

#: Every terminal name of the grammar; none may appear in a message.
TERMINAL_NAMES = {t.name for t in bare_lark().terminals} | {"$END"}
WORD = re.compile(r"[A-Za-z0-9_$]+")


def assert_sound(text: str, result) -> None:
    assert isinstance(result, ParseResult)
    assert isinstance(result.file, n.File)
    # a bare carriage return ends a line too (old Mac files)
    last_line = re.sub(r"\r(?!\n)", "\n", text).count("\n") + 1
    for d in result.diagnostics:
        assert d.code in ("FL100", "FL101"), d
        assert isinstance(d.message, str) and d.message.strip(), d
        assert 1 <= d.line <= last_line and 1 <= d.end_line <= last_line, (d, last_line)
        assert d.line <= d.end_line and d.column >= 1, d
        leaked = {w for w in WORD.findall(f"{d.message} {d.help or ''}")
                  if w in TERMINAL_NAMES and w not in text}
        assert not leaked, (leaked, d.message)
    if not any(d.is_error for d in result.diagnostics):
        assert result.broken == ()


def parse_and_check(text: str) -> None:
    result = parse_text(text, "fuzz.flow")
    assert_sound(text, result)
    again = parse_text(text, "fuzz.flow")
    assert again.diagnostics == result.diagnostics  # no state leaks from one parse to the next


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ------------------------------------------------------------------ (a) never raises

@FUZZ
@given(st.text(max_size=400))
def test_random_text(text):
    parse_and_check(text)


@FUZZ
@given(st.lists(st.sampled_from(POOL), max_size=120))
def test_random_token_soup(parts):
    parse_and_check("".join(parts))


@st.composite
def token_mutants(draw):
    name = draw(st.sampled_from(sorted(OK_TEXTS)))
    toks = tokens(OK_TEXTS[name])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "swap"]))
        i = draw(st.integers(0, max(len(toks) - 1, 0)))
        if op == "insert":
            toks.insert(i, draw(st.sampled_from(POOL)))
        elif op == "delete" and toks:
            del toks[i:i + draw(st.integers(1, 3))]
        elif op == "replace" and toks:
            toks[i] = draw(st.sampled_from(POOL))
        elif op == "duplicate" and toks:
            toks[i:i] = toks[i:i + draw(st.integers(1, 12))]
        elif op == "swap" and len(toks) > 1:
            j = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
    return "".join(toks)


@st.composite
def char_mutants(draw):
    text = list(OK_TEXTS[draw(st.sampled_from(sorted(OK_TEXTS)))])
    alphabet = st.one_of(st.sampled_from(sorted(set("".join(OK_TEXTS.values())))),
                         st.characters(), st.sampled_from(['"', "{", "}", "\n", "\\", "#"]))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        i = draw(st.integers(0, len(text) - 1))
        if op == "insert":
            text.insert(i, draw(alphabet))
        elif op == "delete":
            del text[i]
        elif op == "replace":
            text[i] = draw(alphabet)
        else:
            text[i:i] = text[i:i + draw(st.integers(1, 40))]
    return "".join(text)


@FUZZ
@given(token_mutants())
def test_token_mutations_of_ok_files(text):
    parse_and_check(text)


@FUZZ
@given(char_mutants())
def test_character_mutations_of_ok_files(text):
    parse_and_check(text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(token_mutants(), min_size=2, max_size=4))
def test_several_mutated_files_in_one_text(texts):
    # Errors in several declarations of one file exercise the per-declaration recovery.
    parse_and_check("\n".join(texts))


@pytest.mark.parametrize("text", [
    "", "\n\n", "}", "{" * 500, "}" * 500, '"' * 501, '"""' * 101, "flow x {" * 200,
    "flow x {\n" + "split { otherwise {\n" * 300, "(" * 2000, "flow x {\n wait for " + "(" * 2000,
    "flow x {\r  complete\r}\r", "\x00flow", "flow x { " + "a " * 5000 + "}",
    'flow x {\n  send email "a" { body """\n' + "text\n" * 500,
])
def test_hostile_shapes(text):
    parse_and_check(text)


# ------------------------------------------------------------------ (b) linear time

DECLARED = re.compile(r"^(?:flow|pipeline|form|link)\s+([A-Za-z_]\w*)", re.M)
STRING_OR_WORD = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*'
                            r"|[A-Za-z_]\w*")


def renamed(text: str, suffix: str) -> str:
    """`text` with every declared name (and each use of it outside strings and
    comments) given `suffix`, so that copies of a text form a valid project."""
    names = set(DECLARED.findall(text))

    def rename(match: re.Match) -> str:
        word = match.group()
        return word + suffix if word in names else word

    return STRING_OR_WORD.sub(rename, text)


def repeated(text: str, times: int) -> str:
    return "\n".join(renamed(text, f"_{i}") for i in range(times))


def with_errors(text: str) -> str:
    """`text` with two syntax errors in every top-level declaration: one after its
    first line and one before its closing brace."""
    out = []
    for line in text.split("\n"):
        if line.startswith("}"):
            out.append("    complete ] ")
        out.append(line)
        if DECLARED.match(line) or line.startswith("schema "):
            out.append("  = oops")
    return "\n".join(out)


def cpu_time(text: str) -> float:
    gc.collect()
    start = time.process_time()
    parse_text(text, "big.flow")
    return time.process_time() - start


def growth(text: str, times: int = 10, rounds: int = 4, attempts: int = 3) -> float:
    """CPU time of `text` repeated `times`x over CPU time of `text`, each the best of
    several runs taken in alternation (so that a burst of load elsewhere hits both).
    Measured again, up to `attempts` times, if a noisy run makes it look superlinear."""
    big = repeated(text, times)
    ratio = float("inf")
    for _ in range(attempts):
        small_best = big_best = float("inf")
        for _ in range(rounds):
            small_best = min(small_best, cpu_time(text), cpu_time(text))
            big_best = min(big_best, cpu_time(big))
        ratio = min(ratio, big_best / max(small_best, 1e-6))
        if ratio < 15:
            break
    return ratio


#: Every conformance file, twice (about 600 lines): long enough to time reliably.
BASE = repeated("\n".join(OK_TEXTS[name] for name in sorted(OK_TEXTS)), 2) if OK_TEXTS else ""


def test_renamed_copies_stay_valid():
    big = repeated(BASE, 3)
    result = parse_text(big)
    assert big.count("\n") > 1500
    assert result.diagnostics == ()
    names = [d.name.text for d in result.file.declarations if hasattr(d, "name")]
    assert len(names) == len(set(names))  # no name is declared twice
    assert "welcome_1_2" in names and "add to flow reengage_1_2" in big
    assert '"Welcome"' in big  # strings are left alone


def test_error_text_has_errors_in_every_declaration():
    text = with_errors(BASE)
    result = parse_text(text)
    declarations = len(parse_text(BASE).file.declarations)
    assert len(result.diagnostics) == 2 * declarations
    assert {d.code for d in result.diagnostics} == {"FL100"}
    assert len(result.broken) == declarations


def test_parse_time_is_linear():
    # Warm the cached parser first: building the LALR tables is not parse time.
    parse_text(BASE)
    ratio = growth(BASE)
    assert ratio < 15, f"10x the text took {ratio:.1f}x the time"


def test_recovery_time_is_linear():
    text = with_errors(BASE)
    parse_text(text)
    ratio = growth(text)
    assert ratio < 15, f"10x the text with errors took {ratio:.1f}x the time"
