"""Unit tests of the parser: conformance files, syntax-error recovery, literals, spans.

Syntax-error cases live as data in `tests/cases/syntax/*.flow`: each starts with
`# expect: CODE@LINE` lines (the same format as the shared conformance cases) and may
carry a `# xfail: reason` line for a known parser bug; one parametrised test runs them.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from flowlang import nodes as n
from flowlang.literals import Duration, Size
from flowlang.syntax import parse_text
from flowlang.syntax.parser import bare_lark

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CONFORMANCE = REPO.parent / "shared" / "conformance"
SYNTAX_CASES = TESTS / "cases" / "syntax"

EXPECT = re.compile(r"^#\s*expect:\s*(FL\d{3})@(\d+)\s*$", re.M)
XFAIL = re.compile(r"^#\s*xfail:\s*(.+)$", re.M)

OK_FILES = sorted((CONFORMANCE / "ok").glob("*.flow"))
STDLIB_FILES = sorted((REPO / "stdlib").glob("*.flow"))
#: The bad conformance cases whose codes come from the parser alone.
PARSER_BAD_FILES = sorted(p for p in (CONFORMANCE / "bad").glob("*.flow")
                          if p.name.startswith(("FL100", "FL101")))
CASE_FILES = sorted(SYNTAX_CASES.glob("*.flow"))

needs_conformance = pytest.mark.skipif(not OK_FILES, reason=f"no conformance cases in {CONFORMANCE}")


def pairs(result) -> list[tuple[str, int]]:
    return sorted((d.code, d.line) for d in result.diagnostics)


def expected_pairs(text: str) -> list[tuple[str, int]]:
    return sorted((code, int(line)) for code, line in EXPECT.findall(text))


def flow_with(body: str, name: str = "f") -> str:
    """A flow whose body is `body` (indented two spaces); its first line is line 2."""
    lines = "\n".join("  " + line if line else "" for line in body.strip("\n").split("\n"))
    return f"flow {name} {{\n{lines}\n}}\n"


def only_decl(text: str):
    result = parse_text(text, "t.flow")
    assert result.diagnostics == (), [d.message for d in result.diagnostics]
    (decl,) = result.file.declarations
    return decl


def first_step(body: str):
    return only_decl(flow_with(body)).items[0]


# ------------------------------------------------------------------ no Lark names in messages

#: Every terminal name of the grammar (`NAME`, `_SEP`, `LBRACE`, `__ANON_0`, ...) and `$END`.
TERMINAL_NAMES = sorted({t.name for t in bare_lark().terminals} | {"$END"}, key=len, reverse=True)
LARK_WORDS = re.compile(r"(?<![A-Za-z0-9_$])(?:%s)(?![A-Za-z0-9_])" % "|".join(
    re.escape(name) for name in TERMINAL_NAMES))


def lark_words(result, text: str) -> list[str]:
    """Terminal names that leak into messages or help lines (and are not in the text)."""
    leaks = []
    for d in result.diagnostics:
        for found in LARK_WORDS.findall(f"{d.message}\n{d.help or ''}"):
            if found not in text:
                leaks.append(f"{d.line}: {found!r} in {d.message!r} / {d.help!r}")
    return leaks


# ------------------------------------------------------------------ conformance

@needs_conformance
@pytest.mark.parametrize("path", OK_FILES + STDLIB_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_ok_files_parse_without_diagnostics(path):
    result = parse_text(path.read_text(encoding="utf-8"), str(path))
    assert [(d.code, d.line, d.message) for d in result.diagnostics] == []
    assert result.ok and result.broken == ()
    assert result.file.declarations


@needs_conformance
def test_ok_files_together_parse_as_one_text():
    # The declarations of every file in one text: nothing depends on file boundaries.
    text = "\n".join(p.read_text(encoding="utf-8") for p in OK_FILES)
    result = parse_text(text, "all.flow")
    assert result.diagnostics == ()
    count = sum(len(parse_text(p.read_text(encoding="utf-8")).file.declarations) for p in OK_FILES)
    assert len(result.file.declarations) == count


@needs_conformance
@pytest.mark.parametrize("path", PARSER_BAD_FILES, ids=lambda p: p.name)
def test_parser_bad_conformance_cases(path):
    text = path.read_text(encoding="utf-8")
    result = parse_text(text, str(path))
    assert pairs(result) == expected_pairs(text)
    assert lark_words(result, text) == []


# ------------------------------------------------------------------ syntax-error cases as data

def _case_param(path: Path):
    text = path.read_text(encoding="utf-8")
    reason = XFAIL.search(text)
    marks = [pytest.mark.xfail(reason=reason.group(1), strict=True)] if reason else []
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", [_case_param(p) for p in CASE_FILES])
def test_syntax_case(path):
    text = path.read_text(encoding="utf-8")
    expected = expected_pairs(text)
    assert expected, f"{path.name} has no `# expect:` line"
    result = parse_text(text, str(path))
    assert pairs(result) == expected, "\n".join(
        f"{d.code}@{d.line}:{d.column} {d.message}" for d in result.diagnostics)
    for d in result.diagnostics:
        assert d.message and d.file == str(path)
        assert 1 <= d.line <= d.end_line <= text.count("\n") + 1
        assert (d.line, d.column) < (d.end_line, d.end_column)
    assert lark_words(result, text) == []


def test_syntax_cases_exist():
    assert len(CASE_FILES) >= 10


def test_declarations_after_errors_are_still_parsed():
    text = (SYNTAX_CASES / "pipeline_form_link.flow").read_text(encoding="utf-8")
    result = parse_text(text, "p.flow")
    names = [(type(d).__name__, d.name.text) for d in result.file.declarations]
    assert names == [("Pipeline", "leads"), ("Form", "signup"), ("Link", "pricing"),
                     ("Flow", "fine")]
    # The broken declarations are flagged so that later stages can skip them.
    fine = result.file.declarations[-1]
    assert not any(fine.span.line in r for r in result.broken)
    assert all(any(d.line in r for r in result.broken) for d in result.diagnostics)


def test_recovered_statements_keep_the_rest_of_the_flow():
    text = (SYNTAX_CASES / "nested_split.flow").read_text(encoding="utf-8")
    (flow,) = parse_text(text).file.declarations
    outer = flow.items[0]
    assert isinstance(outer, n.Split) and isinstance(flow.items[-1], n.Complete)
    inner = outer.items[0].body.statements[0]
    assert isinstance(inner, n.Split) and inner.title.value == "Inner"
    kept = inner.items[0].body.statements
    assert [type(s).__name__ for s in kept] == ["Command", "Complete"]  # the broken wait is gone


# ------------------------------------------------------------------ syntax errors: messages

@pytest.mark.parametrize("body, line, fragment", [
    ("wait three days", 2, "`three`"),
    ("wait", 2, "duration"),
    ("goto", 2, "a name"),
    ("goto 3", 2, "a name"),
    ('split { branch when person.score > 1 { complete } }', 2, "found `when`"),
    ("wait for person.score >", 2, "the end of the line"),
    ("wait until tomorrow", 2, "a date"),
    ('add to selection "S" @', 2, "`@`"),
    ('send email "A" {\n  subject "x" ]\n}', 3, "`]`"),
    ("complete\n}", 4, "a declaration"),
])
def test_syntax_error_messages(body, line, fragment):
    text = flow_with(body)
    result = parse_text(text, "t.flow")
    assert pairs(result) == [("FL100", line)]
    assert fragment in result.diagnostics[0].message
    assert lark_words(result, text) == []


def test_number_in_words_gets_a_help_line():
    result = parse_text(flow_with("wait three days"))
    (d,) = result.diagnostics
    assert (d.line, d.column, d.end_line, d.end_column) == (2, 8, 2, 13)
    assert d.help == "write the number in digits: `3`"


def test_missing_branch_name_gets_a_help_line():
    (d,) = parse_text(flow_with('split { branch when person.score > 1 { complete } }')).diagnostics
    assert "branch \"Name\"" in d.help


def test_missing_closing_brace_points_at_the_end_and_says_so():
    text = "flow f {\n  wait 2 days\n  complete\n\n\n"
    (d,) = parse_text(text).diagnostics
    assert (d.code, d.line) == ("FL100", 3)  # the last line with text, not the blank ones
    assert "end of the file" in d.message
    assert "never closed" in d.help


def test_unterminated_string_message():
    text = flow_with('send email "A" {\n  subject "Hello\n}')
    (d,) = parse_text(text).diagnostics
    assert (d.code, d.line, d.column) == ("FL100", 3, 13)
    assert d.message == "unterminated string"


def test_missing_condition_says_condition():
    for body in ("wait for", "success when", 'split {\n  branch "A" when { complete }\n}'):
        (d,) = parse_text(flow_with(body)).diagnostics
        assert "a condition" in d.message, d.message


def test_unterminated_triple_string_help_mentions_triple_quotes():
    text = flow_with('send email "A" {\n  body """\n    Hello\n}')
    d = parse_text(text).diagnostics[0]
    assert d.line == 3
    assert 'a "…" string ends on the line where it starts' not in (d.help or "")
    assert '"""' in d.message + (d.help or "")


def test_no_lark_names_in_messages_of_assorted_errors():
    snippets = [
        "flow", "flow {", "flow x", "flow x {", "}", "{", "flow x {\n  wait for\n}",
        "pipeline p { move }", "pipeline p { stage }", "schema person { field }",
        "form f { on }", "link l", 'link l "u" { on click { } ', "flow x {\n  split on {\n}\n}",
        "flow x {\n  x: y: wait 1 day\n}",
        "flow x {\n  wait for (person.x\n}", "flow x {\n  wait for [1,\n}", 'action "x" {', "event",
        "flow x {\n  success person.x\n}", "flow x {\n  ~\n}",
    ]
    for text in snippets:
        result = parse_text(text)
        assert result.diagnostics, text
        assert all(d.code == "FL100" and d.message for d in result.diagnostics)
        assert lark_words(result, text) == [], text


# ------------------------------------------------------------------ FL101: invalid literals

@pytest.mark.parametrize("body, line, fragment", [
    ("wait 3 fortnights", 2, "unknown unit `fortnights`"),
    ("wait 1 day 3 dayz", 2, "unknown unit `dayz`"),
    ("wait until 2026-02-30", 2, "February 2026 has 28 days"),
    ("wait until 2025-02-29", 2, "February 2025 has 28 days"),
    ("wait until 2026-13-01", 2, "no month 13"),
    ("wait until 2026-03-01 25:00", 2, "hours go from 00 to 23"),
    ("wait until 2026-03-01 09:60", 2, "minutes go from 00 to 59"),
    ('split random {\n  branch "A" 150% { complete }\n}', 3, "between 0% and 100%"),
    ('send email "a\\qb" { subject "x" }', 2, "unknown escape `\\q`"),
    ('send email "A" {\n  subject "x"\n  attach "a.pdf" 3 GB\n}', 4, "unknown unit `GB`"),
    ('send email "A" { attach "a.pdf" 3 MB 2 kB }', 2, "one amount and one unit"),
    ("wait 1 day 2 MB", 2, "cannot mix"),
])
def test_invalid_literals(body, line, fragment):
    text = flow_with(body)
    result = parse_text(text, "t.flow")
    assert [d.code for d in result.diagnostics] == ["FL101"], [d.message for d in result.diagnostics]
    (d,) = result.diagnostics
    assert fragment in d.message
    assert d.line == line
    # An invalid literal is not a syntax error: the flow is still built and not "broken".
    assert result.broken == () and len(result.file.declarations) == 1


def test_valid_edge_literals_are_accepted():
    only_decl(flow_with("wait until 2024-02-29 23:59\nwait until 2026-12-31 00:00\n"
                        'split random {\n  branch "A" 0% { exit }\n  branch "B" 100% { exit }\n}'))


def test_invalid_literal_span_and_help():
    (d,) = parse_text(flow_with("wait 2 dayss")).diagnostics
    assert (d.line, d.column, d.end_line, d.end_column) == (2, 8, 2, 15)  # `2 dayss`
    assert d.help == "did you mean `days`?"


def test_invalid_literal_inside_a_recovered_declaration_is_kept():
    text = flow_with("wait 3 fortnights\nwait three days") + flow_with("wait until 2026-02-30", "g")
    assert pairs(parse_text(text)) == [("FL100", 3), ("FL101", 2), ("FL101", 6)]


# ------------------------------------------------------------------ literal values

def test_duration_keeps_its_units():
    wait = first_step("wait 1 day 12 hours")
    assert isinstance(wait, n.Wait) and isinstance(wait.duration, n.DurationLit)
    assert wait.duration.value == Duration(((1, "day"), (12, "hour")))
    assert first_step("wait 2 workdays").duration.value == Duration(((2, "workday"),))
    assert first_step("wait 1 week 1 minute").duration.value == Duration(((1, "week"), (1, "minute")))
    assert first_step("wait 1.5 hours").duration.value == Duration(((1.5, "hour"),))


def test_dates_and_times_are_python_values():
    step = first_step("wait until 2026-12-10 09:00")
    assert isinstance(step, n.WaitUntil)
    assert step.date.value == dt.date(2026, 12, 10) and type(step.date.value) is dt.date
    assert step.time.value == dt.time(9, 0)
    assert first_step("wait until 2026-12-24").time is None


def test_sizes_numbers_percentages_bools_lists():
    send = first_step('send email "A" {\n  attach "a.pdf" 3 MB\n  attach "b.pdf" 250 kB\n}')
    sizes = [s.parts[-1] for s in send.body.statements]
    assert [s.value for s in sizes] == [Size(3, "MB"), Size(250, "kB")]
    assert sizes[0].value.bytes == 3_000_000
    update = first_step("update person {\n  set score = 42\n  set rate = 3.5\n}")
    values = [s.parts[-1].value for s in update.body.statements]
    assert values == [42, 3.5] and type(values[0]) is int and type(values[1]) is float
    split = first_step('split random {\n  branch "A" 33.5% { exit }\n  branch "B" 66.5% { exit }\n}')
    assert [b.weight.value for b in split.items] == [33.5, 66.5]
    wait = first_step('wait for person.vip == true or person.tags in ["a", b, 3]')
    assert wait.condition.left.right == n.BoolLit(True)
    assert wait.condition.right.right == n.ListLit((n.Str("a"), n.Word("b"), n.Num(3)))


def test_string_escapes_and_triple_strings():
    send = first_step('send email "say \\"hi\\"" {\n  subject "a\\\\b\\nc\\td"\n}')
    assert send.parts[-1].value == 'say "hi"'
    assert send.body.statements[0].parts[-1].value == "a\\b\nc\td"
    body = first_step('send email "A" {\n  body """\n    Dear {{ person.first_name }},\n'
                      '      indented\n    bye\n    """\n}').body.statements[0].parts[-1]
    assert body == n.Str("Dear {{ person.first_name }},\n  indented\nbye", True)
    assert body.line_offset == 1
    inline = first_step('send email "A" { body """one "quoted" line""" }').body.statements[0].parts[-1]
    assert (inline.value, inline.triple, inline.line_offset) == ('one "quoted" line', True, 0)


# ------------------------------------------------------------------ spans

SPAN_TEXT = '''\
flow spans "Title" {
  again: wait 1 day 12 hours
  send email "Hi" {
    attach "a.pdf" 3 MB
    body """
      Hello {{ person.first_name }},
      bye
      """
  }
  wait until 2026-12-10 09:30
}
'''


def _where(node) -> tuple[int, int, int, int]:
    s = node.span
    return (s.line, s.column, s.end_line, s.end_column)


def test_spans_of_nodes():
    flow = only_decl(SPAN_TEXT)
    assert flow.span.file == "t.flow"
    assert _where(flow) == (1, 1, 11, 2)
    assert _where(flow.name) == (1, 6, 1, 11)
    assert _where(flow.title) == (1, 12, 1, 19)
    wait, send, until = flow.items
    assert _where(wait) == (2, 3, 2, 29)  # from the label to the last unit
    assert _where(wait.label) == (2, 3, 2, 8)
    assert _where(wait.duration) == (2, 15, 2, 29)
    assert _where(send) == (3, 3, 9, 4)
    attach, body = send.body.statements
    assert [_where(p) for p in attach.parts] == [(4, 5, 4, 11), (4, 12, 4, 19), (4, 20, 4, 24)]
    string = body.parts[-1]
    assert _where(string) == (5, 10, 8, 10)  # from the opening to the closing quotes
    assert string.line_offset == 1  # the value starts on the line below the quotes
    assert string.value.startswith("Hello")
    assert _where(until) == (10, 3, 10, 30)
    assert _where(until.time) == (10, 25, 10, 30)


def test_triple_string_line_offset_in_a_conformance_file():
    path = CONFORMANCE / "ok" / "welcome.flow"
    if not path.exists():
        pytest.skip("no conformance cases")
    text = path.read_text(encoding="utf-8")
    strings = [x for x in parse_text(text).file.walk() if isinstance(x, n.Str) and x.triple]
    assert len(strings) == 1
    (agenda,) = strings
    opening = text.split("\n")[agenda.span.line - 1]
    assert opening.strip() == 'agenda """'
    first_value_line = text.split("\n")[agenda.span.line - 1 + agenda.line_offset]
    assert first_value_line.strip() == agenda.value.split("\n")[0]


def _check_offsets(text: str, file: n.File) -> int:
    """Every Word, Name and Str span must slice its own text out of the source, and
    its line/column must agree with its offset. Returns the number of nodes checked."""
    line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    checked = 0
    for node in file.walk():
        if not isinstance(node, (n.Word, n.Name, n.Str)) or node.span is None:
            continue
        s = node.span
        piece = text[s.start:s.end]
        if isinstance(node, n.Str):
            assert piece.startswith('"') and piece.endswith('"'), (node, piece)
        else:
            assert piece == node.text, (node, piece)
        assert line_starts[s.line - 1] + s.column - 1 == s.start, node
        assert line_starts[s.end_line - 1] + s.end_column - 1 == s.end, node
        checked += 1
    return checked


@needs_conformance
def test_spans_slice_the_source_in_ok_files():
    for path in OK_FILES:
        text = path.read_text(encoding="utf-8")
        assert _check_offsets(text, parse_text(text).file) > 10


def test_spans_slice_the_source_after_recovery():
    # The declarations after a broken one are parsed alone, with offsets added back.
    text = (SYNTAX_CASES / "pipeline_form_link.flow").read_text(encoding="utf-8")
    result = parse_text(text)
    assert result.diagnostics
    assert _check_offsets(text, result.file) > 10
    fine = result.file.declarations[-1]
    assert text.split("\n")[fine.span.line - 1] == "flow fine {"


def test_diagnostic_spans_after_recovery():
    text = flow_with("wait 1 day") + "\n" + flow_with("wait 2 days\nadd to selection \"S\" @", "g")
    (d,) = parse_text(text, "t.flow").diagnostics
    assert (d.file, d.line, d.column, d.end_line, d.end_column) == ("t.flow", 7, 24, 7, 25)


def test_comments_are_collected_with_positions():
    text = "# head\nflow f { # after brace\n  wait 1 day  # trailing\n  # own line\n  complete\n}\n"
    file = parse_text(text).file
    assert [(c.text, c.span.line, c.span.column) for c in file.comments] == [
        ("# head", 1, 1), ("# after brace", 2, 10), ("# trailing", 3, 15), ("# own line", 4, 3)]


# ------------------------------------------------------------------ keywords as plain words

@pytest.mark.parametrize("body, path, words", [
    ('create sale "S" {\n  type "New business"\n  stage "Lead"\n}', (1,), ("stage",)),
    ("update person {\n  set score = 10\n}", (0,), ("set", "score")),
    ("update person {\n  clear lead_status\n  increase score by 10\n}", (1,),
     ("increase", "score", "by")),
    ("add to flow other", (), ("add", "to", "flow", "other")),
    ('send sms {\n  text "t"\n  no mobile exit { add to flow y }\n}', (1,), ("no", "mobile", "exit")),
    ('send sms {\n  text "t"\n  no mobile exit { add to flow y }\n}', (1, 0),
     ("add", "to", "flow", "y")),
    ('complete {\n  success add to flow a\n  no success add to flow b\n}', (0,),
     ("success", "add", "to", "flow", "a")),
    ('exit { add to selection "S" }', (0,), ("add", "to", "selection")),
    ("note form settings exit wait split", (), ("note", "form", "settings", "exit", "wait", "split")),
    ("tell trigger link schema pipeline for on filter stage move field max", (),
     ("tell", "trigger", "link", "schema", "pipeline", "for", "on", "filter", "stage", "move",
      "field", "max")),
    ("say within else continue goto complete random branch when otherwise", (),
     ("say", "within", "else", "continue", "goto", "complete", "random", "branch", "when",
      "otherwise")),
    ("mark not set true false action event until", (),
     ("mark", "not", "set", "true", "false", "action", "event", "until")),
    ('post to slack {\n  channel "x"\n  message flow\n}', (1,), ("message", "flow")),
    ('create followup "Call" {\n  type "Phone call"\n  date meeting first available after 2 workdays\n}',
     (1,), ("date", "meeting", "first", "available", "after")),
    ('create activity "Call" {\n  type call\n  due in 1 workday\n}', (1,), ("due", "in")),
])
def test_keywords_are_plain_words_inside_phrases(body, path, words):
    node = first_step(body)
    for index in path:  # down through the blocks: body.statements[index]
        node = node.body.statements[index]
    assert isinstance(node, n.Command), node
    assert node.words[:len(words)] == words


@pytest.mark.parametrize("setting", [
    'email from "a@b.example"', "workdays mon tue wed thu fri", 'holidays "NO"',
    'authorize auto send "a@b.example"', 'timezone "Europe/Oslo"', "for person",
    "quiet exit wait split", "sender flow form link", "style trigger settings schema pipeline",
])
def test_settings_lines_may_use_keywords(setting):
    flow = only_decl(f"flow f {{\n  settings {{\n    {setting}\n  }}\n  complete\n}}\n")
    (line,) = flow.settings.body.statements
    assert isinstance(line, n.Command)
    assert " ".join(p.text for p in line.parts if isinstance(p, n.Word)) == \
        " ".join(w for w in setting.split() if not w.startswith('"'))


def test_keywords_in_trigger_handlers_and_stages():
    pipeline = only_decl(
        'pipeline p {\n  stage new "New" {\n    on enter {\n      create task "T" { due in 1 workday }\n'
        '    }\n  }\n  stage done "Done" { final }\n  move new to done on call logged outcome "Won"\n'
        '  on contact lifecycle becomes "SQL" {\n    create lead { stage new }\n  }\n}\n')
    stage = pipeline.stages[0]
    (handler,) = stage.items
    assert handler.event.text == "enter"
    lead = pipeline.items[-1].body.statements[0]
    assert lead.words == ("create", "lead")
    assert lead.body.statements[0].words == ("stage", "new")
    assert pipeline.items[2].events[0].text == 'call logged outcome "Won"'
    flow = only_decl('flow f {\n  trigger {\n    on form signup submitted\n    once per person\n'
                     '    exclude selection "X"\n  }\n  complete\n}\n')
    on, once, exclude = flow.trigger.items
    assert on.event.text == "form signup submitted"
    assert once.words == ("once", "per", "person")
    assert exclude.words == ("exclude", "selection")


def test_steps_still_are_steps():
    flow = only_decl(flow_with(
        'again: wait 1 day\nwait until 2026-12-10\nwait for opened email "A" within 2 days else exit\n'
        'split on person.country {\n  "NO" { goto again }\n  "SE", "DK" { exit }\n  otherwise exit\n}\n'
        "complete"))
    assert [type(s).__name__ for s in flow.items] == ["Wait", "WaitUntil", "WaitFor", "Split", "Complete"]
    split = flow.items[3]
    assert split.mode == "value" and split.subject == n.Ref(("person", "country"))
    assert [len(b.values) for b in split.branches] == [1, 2]
    assert split.otherwise.exit is True
    assert isinstance(flow.items[2].otherwise, n.ElseExit)
