"""The canonical formatter: it keeps the AST and every comment, it is idempotent, and it
lays files out as documented in `flowlang.fmt`.

Example files come from the conformance suite, `examples/`, `stdlib/` and the test cases
that parse; random ASTs
come from `tests/strategies.py`. `FLOWLANG_FMT_EXAMPLES` raises the number of random
examples for a longer local run.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import strategies
from flowlang import nodes as n
from flowlang.fmt import format_file, format_text
from flowlang.syntax import parse_text

ROOT = Path(__file__).resolve().parent.parent
_CONFORMANCE_DIRS = [ROOT / "conformance", ROOT / "tests" / "conformance",
                     Path("/work/shared/conformance")]
CONFORMANCE = next((d for d in _CONFORMANCE_DIRS if d.is_dir()), None)


def _example_files() -> list[Path]:
    found: list[Path] = []
    if CONFORMANCE is not None:
        found += sorted(CONFORMANCE.glob("ok/*.flow"))
        found += sorted(p for p in CONFORMANCE.glob("bad/*.flow")
                        if p.name != "FL100_syntax.flow")
    found += sorted((ROOT / "examples").rglob("*.flow"))
    found += sorted((ROOT / "stdlib").glob("*.flow"))
    found += [p for p in sorted((ROOT / "tests" / "cases").rglob("*.flow")) if _parses(p)]
    return found


def _parses(path: Path) -> bool:
    """No syntax error: fmt formats only such files (FL101 and checker codes are fine)."""
    diagnostics = parse_text(path.read_text(encoding="utf-8")).diagnostics
    return not any(d.code == "FL100" for d in diagnostics)


EXAMPLES = _example_files()
OK_EXAMPLES = [p for p in EXAMPLES if p.parent.name == "ok"]


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def fmt(text: str) -> str:
    formatted, diagnostics = format_text(text)
    assert formatted is not None, diagnostics
    return formatted


def comment_texts(text: str) -> list[str]:
    return [c.text for c in parse_text(text).file.comments]


def assert_faithful(text: str) -> str:
    """fmt keeps the AST, the comments (text and order) and the diagnostic codes, and is
    idempotent. Returns the formatted text."""
    before = parse_text(text)
    formatted = fmt(text)
    after = parse_text(formatted)
    assert after.file == before.file  # declarations, and comments by text, in order
    assert comment_texts(formatted) == comment_texts(text)
    assert [d.code for d in after.diagnostics] == [d.code for d in before.diagnostics]
    assert fmt(formatted) == formatted
    return formatted


# ----------------------------------------------------------------------------- example files

def test_example_files_are_found():
    assert OK_EXAMPLES, "no conformance examples found"


@pytest.mark.parametrize("path", EXAMPLES, ids=_id)
def test_example_file_round_trips(path: Path):
    assert_faithful(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", OK_EXAMPLES, ids=_id)
def test_ok_example_keeps_every_comment(path: Path):
    text = path.read_text(encoding="utf-8")
    expected = [line.strip() for line in text.splitlines() if line.lstrip().startswith("#")]
    assert expected, "the ok examples all carry comments"
    formatted = fmt(text)
    assert [line.strip() for line in formatted.splitlines()
            if line.lstrip().startswith("#")] == expected


def test_welcome_example_is_already_canonical():
    """The design's own layout, `\"\"\"` agenda included, is the canonical one."""
    if CONFORMANCE is None:
        pytest.skip("no conformance suite")
    text = (CONFORMANCE / "ok" / "welcome.flow").read_text(encoding="utf-8")
    assert fmt(text) == text


# ----------------------------------------------------------------------------- syntax errors

def test_syntax_error_is_not_formatted():
    text = "flow broken {\n  wait three days\n  complete\n}\n"
    formatted, diagnostics = format_text(text, "broken.flow")
    assert formatted is None
    assert diagnostics and {d.code for d in diagnostics} == {"FL100"}
    assert diagnostics[0].file == "broken.flow"


def test_conformance_syntax_errors_are_not_formatted():
    if CONFORMANCE is None:
        pytest.skip("no conformance suite")
    text = (CONFORMANCE / "bad" / "FL100_syntax.flow").read_text(encoding="utf-8")
    formatted, diagnostics = format_text(text)
    assert formatted is None
    assert [d.code for d in diagnostics] == ["FL100", "FL100"]


def test_invalid_literals_are_formatted_as_written():
    text = ("flow dates {\n  wait until 2026-02-30 25:00\n  attach 3 parsecs\n"
            "  split random { branch \"A\" 150% {} }\n}\n")
    formatted, diagnostics = format_text(text)
    assert {d.code for d in diagnostics} == {"FL101"}
    assert formatted == textwrap.dedent("""\
        flow dates {
          wait until 2026-02-30 25:00
          attach 3 parsecs
          split random {
            branch "A" 150% {}
          }
        }
        """)


INVALID_LITERALS = r'''flow f "a\q" {
  send email "\q" {
    subject """
      bad \q
      """
  }
  wait 1.50 parsecs
  wait 2 days 3
  split "x\z" random { branch "\y" 101% { complete } }
  wait until 0999-02-30 7:75
}
link l "\u" {}
'''


def test_invalid_literals_round_trip():
    formatted = assert_faithful(INVALID_LITERALS)
    assert 'subject """\n      bad \\q\n      """' in formatted  # as written
    assert "wait until 0999-02-30 7:75" in formatted


def test_year_zero_is_an_invalid_literal():
    formatted, diagnostics = format_text("flow f {\n  wait until 0000-01-01\n}\n")
    assert [d.code for d in diagnostics] == ["FL101"]
    assert formatted == "flow f {\n  wait until 0000-01-01\n}\n"


def test_line_ends_and_tabs_do_not_matter():
    text = "flow f {\n  send email \"Hi\" { subject \"Hello\" }  # c\n  complete\n}\n"
    assert fmt(text.replace("\n", "\r\n")) == text
    assert fmt(text.replace("\n", "\r")) == text
    assert fmt(text.replace("  ", "\t")) == text


def test_empty_file():
    assert fmt("") == ""
    assert fmt("\n\n") == ""
    assert fmt("# only a comment\n") == "# only a comment\n"


# ----------------------------------------------------------------------------- golden layouts

MESSY = """\
# A messy file.


flow   welcome "Welcome"{
for person
        settings { email from "a@acme.example" ; email reply_to "a@acme.example" }



  # Say hello
  send email "Hi" {    subject "Hello"   }   # the first one
  wait 1 days 1 hours;wait 1.50 days
  attach "big.pdf" 3 MB
  wait until 2026-01-01 9:30
  split "Engagement" {

    branch "A" when not (person.score == 1) and (person.x or person.y) { complete }
    branch "B" when (person.score >= 050%) {
      add to selection "B" }
    otherwise exit

  }
  update person { set topics = [ "a" ,
     "b", ] }
}
form f{on submit{add interest "x"}}
pipeline leads{stage new "New"{final}
stage won {}}
"""

MESSY_FORMATTED = """\
# A messy file.

flow welcome "Welcome" {
  for person
  settings {
    email from "a@acme.example"
    email reply_to "a@acme.example"
  }

  # Say hello
  send email "Hi" { subject "Hello" }  # the first one
  wait 1 day 1 hour
  wait 1.5 days
  attach "big.pdf" 3 MB
  wait until 2026-01-01 09:30
  split "Engagement" {
    branch "A" when not person.score == 1 and (person.x or person.y) { complete }
    branch "B" when person.score >= 50% {
      add to selection "B"
    }
    otherwise exit
  }
  update person {
    set topics = ["a", "b"]
  }
}

form f {
  on submit { add interest "x" }
}

pipeline leads {
  stage new "New" { final }
  stage won {}
}
"""


def test_golden_messy_file():
    assert fmt(MESSY) == MESSY_FORMATTED
    assert fmt(MESSY_FORMATTED) == MESSY_FORMATTED


def test_golden_messy_file_keeps_its_meaning():
    """Equal ASTs, once `9:30` is written `09:30` in the source too: it is the same time,
    but `TimeLit.text` takes part in AST equality."""
    assert parse_text(MESSY_FORMATTED).file == parse_text(MESSY.replace(" 9:30", " 09:30")).file


ODD_COMMENTS = """\
# header


# second header
flow a "A" {   # after flow brace
  # lead 1

  # lead 2
  send email "x" { subject "y" }  # trailing 1
  wait 1 day; wait 2 days  # trailing 2
  distribute to owner {  # after brace
    among [  # after bracket
      "Anna",  # after anna
      # own line in list
      "Bjorn",
    ]  # after list
    # dangling in block


  }
  split on person.country in [ # in subject list
     "a"] {
    "NO" { complete }  # after branch
    otherwise exit {
      # only a comment
    }
  }
  exit {
  }
  complete { # c
  }
  # before end
}  # after flow
# right after flow
flow b { complete }
# end 1

# end 2"""

ODD_COMMENTS_FORMATTED = """\
# header

# second header
flow a "A" {  # after flow brace
  # lead 1

  # lead 2
  send email "x" { subject "y" }  # trailing 1
  wait 1 day
  wait 2 days  # trailing 2
  distribute to owner {  # after brace
    # after bracket
    # after anna
    # own line in list
    among ["Anna", "Bjorn"]  # after list
    # dangling in block
  }
  # in subject list
  split on person.country in ["a"] {
    "NO" { complete }  # after branch
    otherwise exit {
      # only a comment
    }
  }
  exit {}
  complete {  # c
  }
  # before end
}  # after flow

# right after flow
flow b { complete }

# end 1

# end 2
"""


def test_golden_comments_in_odd_places():
    assert assert_faithful(ODD_COMMENTS) == ODD_COMMENTS_FORMATTED


def test_golden_triple_quoted_strings():
    text = textwrap.dedent('''\
        flow f {
          split {
            branch "A" {
              create followup "Call" { agenda """
                          Dear {{ person.first_name }},

                            indented "quoted"
                          a \\\\ backslash, a \\t tab
                          """ }
            }
          }
        }
        ''')
    expected = textwrap.dedent('''\
        flow f {
          split {
            branch "A" {
              create followup "Call" {
                agenda """
                  Dear {{ person.first_name }},

                    indented "quoted"
                  a \\\\ backslash, a \\t tab
                  """
              }
            }
          }
        }
        ''')
    assert assert_faithful(text) == expected


def test_golden_blank_lines_collapse_and_never_touch_braces():
    text = "flow f {\n\n\n  wait 1 day\n\n\n\n  # note\n\n\n  complete\n\n}\n\n\n\nflow g {}\n"
    assert fmt(text) == ("flow f {\n  wait 1 day\n\n  # note\n\n  complete\n}\n\n"
                         "flow g {}\n")


def test_one_line_blocks():
    text = textwrap.dedent("""\
        flow f {
          send email "Hi" { subject "Hello" }
          send sms { text "x" ; no mobile skip }
          exit { add to flow g }
          complete { success add to flow x { nested } }
          x: split "A/B" random { branch "A" 50% { complete } }
          notify email {
            subject "multi-line stays expanded" }
        }
        """)
    assert assert_faithful(text) == textwrap.dedent("""\
        flow f {
          send email "Hi" { subject "Hello" }
          send sms {
            text "x"
            no mobile skip
          }
          exit { add to flow g }
          complete {
            success add to flow x { nested }
          }
          x: split "A/B" random {
            branch "A" 50% { complete }
          }
          notify email {
            subject "multi-line stays expanded"
          }
        }
        """)


# ----------------------------------------------------------------------------- comments

TRICKY_COMMENTS = [
    "flow f { # after brace\n}",
    "flow f {\n  wait 1 day # a\n  # b\n}  # c",
    "# only before\nflow f {}\n",
    "flow f {}\n# only after",
    "flow f {}  # no newline at the end",
    "flow f {\n  update person { set topics = [\n    # first\n    \"a\", # second\n"
    "    \"b\" # third\n  ] # fourth\n  } # fifth\n}\n",
    "flow f {\n  wait for person.x in [ # a\n  \"b\"] within 2 days else exit { # c\n  } # d\n}\n",
    "flow f {\n  split { # a\n    # b\n    branch \"x\" when y { # c\n      # d\n    } # e\n"
    "    # f\n    otherwise { complete } # g\n    # h\n  } # i\n}\n",
    "pipeline p {\n  stage a { # a\n    # b\n  } # c\n  stage b # d\n  move a to b on x # e\n"
    "  on y where z in [\n  # f\n  1] { # g\n  }\n}\n",
    "schema person { # a\n  field x text max 3 # b\n  # c\n}\n",
    "form f { # a\n  on submit { # b\n    add interest \"x\" # c\n  } # d\n  # e\n}\n"
    "link l \"u\" { # f\n}\n",
    "flow f {\n  trigger { # a\n    on x # b\n    # c\n    filter y # d\n  }\n"
    "  success when z # e\n  settings { # f\n  }\n}\n",
    "flow f {\n  a; b # after the second\n  # own\n  c;\n  # before close\n}\n",
    "flow f {\n  # same text\n  wait 1 day # same text\n  # same text\n}\n",
    "action \"x {y}\" { # a\n  setting a \"b\" # b\n}\nevent \"e\" {\n  # c\n}\n",
    "\n\n# a\n\n\n# b\nflow f {}\n\n\n# c\n# d\n\n\nflow g {}\n\n# e\n",
]


@pytest.mark.parametrize("text", TRICKY_COMMENTS)
def test_tricky_comments_survive(text: str):
    formatted = assert_faithful(text)
    assert formatted.endswith("\n") and not formatted.endswith("\n\n")


def test_comment_after_open_brace_stays_there():
    assert fmt("flow f {   # why\n  complete\n}") == "flow f {  # why\n  complete\n}\n"


def test_comment_in_a_list_moves_before_its_statement():
    text = "flow f {\n  wait 1 day\n  among [\n    \"a\", # why a\n    \"b\"\n  ] # after\n}\n"
    assert fmt(text) == ("flow f {\n  wait 1 day\n  # why a\n  among [\"a\", \"b\"]  # after\n"
                         "}\n")


# ----------------------------------------------------------------------------- expressions

@pytest.mark.parametrize("source, canonical", [
    ("not (a == 1)", "not a == 1"),
    ("(not a) and b", "not a and b"),
    ("not (a and b)", "not (a and b)"),
    ("not not a", "not not a"),
    ("a and (b or c)", "a and (b or c)"),
    ("(a or b) and c", "(a or b) and c"),
    ("(a or b) or c", "a or b or c"),
    ("a or (b or c)", "a or (b or c)"),
    ("(a and b) and (c and d)", "a and b and (c and d)"),
    ("(a == 1) == true", "(a == 1) == true"),
    ("((x)) is not set", "x is not set"),
    ("(x is set) == false", "(x is set) == false"),
    ("x not in [\"a\",\"b\",]", "x not in [\"a\", \"b\"]"),
    ("not x in [1, 2.50]", "not x in [1, 2.5]"),
    ("person in selection \"S\" and clicked link pricing",
     "person in selection \"S\" and clicked link pricing"),
    ("(opened email \"W\") or d > 2026-01-01", "opened email \"W\" or d > 2026-01-01"),
    ("t >= 7:05", "t >= 07:05"),
])
def test_expression_parentheses(source: str, canonical: str):
    text = f"flow f {{\n  wait for {source}\n}}\n"
    formatted = fmt(text)
    assert formatted == f"flow f {{\n  wait for {canonical}\n}}\n"
    if ":" not in source:  # `7:05` reads back as `07:05`: same time, other text
        assert parse_text(formatted).file == parse_text(text).file


# ----------------------------------------------------------------------------- literals

def _command_with(*parts: n.Node) -> n.File:
    return n.File("<test>", (n.Flow(n.Name("f"), None, (n.Command((n.Word("x"), *parts)),)),))


def _round_trips(file: n.File) -> str:
    text = format_file(file)
    result = parse_text(text)
    assert result.diagnostics == ()
    assert result.file == file
    return text


TRIPLE_VALUES = [
    "", "x", "\n", "\n\n", "a\n", "\na", "a\n\nb", "  a\nb", "a\n  b", "\n  a", "  a\n\n  b",
    "  a\n\n", "a \nb", "a  \n  b", "x\n \ny", "a\t", "\t", "\ta\n\tb", "\t\n", '"""', '""""',
    '"a', 'a"', 'x """ y """"" z', "back\\slash\\", "\\n is not a newline", "{{ x }}\n# y",
    "a\x0c\nb", "é\u2028ü",
]


@pytest.mark.parametrize("value", TRIPLE_VALUES)
def test_triple_quoted_values_round_trip(value: str):
    text = _round_trips(_command_with(n.Str(value, True)))
    assert all(line == line.rstrip() for line in text.split("\n"))


@pytest.mark.parametrize("value", ["", 'say "hi"', "back\\slash", "a\nb\tc", "\x0c", "#"])
def test_one_line_strings_round_trip(value: str):
    _round_trips(_command_with(n.Str(value)))


@pytest.mark.parametrize("value, text", [
    (42, "42"), (-7, "-7"), (3.5, "3.5"), (3.0, "3.0"), (-0.0, "-0.0"),
    (1e16, "10000000000000000.0"), (1.5e-7, "0.00000015"), (1e300, "1" + "0" * 300 + ".0"),
])
def test_numbers(value, text: str):
    assert _round_trips(_command_with(n.Num(value))) == f"flow f {{\n  x {text}\n}}\n"


def test_spanless_blocks_are_expanded():
    block = n.Block((n.Command((n.Word("subject"), n.Str("Hello"))),))
    file = n.File("<test>", (
        n.Flow(n.Name("f"), None, (
            n.Command((n.Word("send"), n.Word("email"), n.Str("Hi")), block),
            n.Exit(n.Block(())),
        )),
        n.Schema(n.Name("person"), ()),
    ))
    assert _round_trips(file) == (
        'flow f {\n  send email "Hi" {\n    subject "Hello"\n  }\n  exit {}\n}\n\n'
        "schema person {}\n")


# ----------------------------------------------------------------------------- random ASTs

N_EXAMPLES = int(os.environ.get("FLOWLANG_FMT_EXAMPLES", "150"))
GENERATED = settings(max_examples=N_EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])


@GENERATED
@given(strategies.files)
def test_generated_asts_round_trip(file: n.File):
    text = format_file(file)
    result = parse_text(text)
    assert result.diagnostics == ()
    assert result.file == file
    assert format_file(result.file) == text  # idempotent
    assert text.endswith("\n") or text == ""


def _string_lines(text: str) -> set[int]:
    """Lines (1-based) that a `\"\"\"` string continues onto: no comment can go there."""
    lines: set[int] = set()
    for declaration in parse_text(text).file.declarations:
        for node in declaration.walk():
            if isinstance(node, (n.Str, n.InvalidLit)) and node.span.end_line > node.span.line:
                lines.update(range(node.span.line + 1, node.span.end_line + 1))
    return lines


def _sprinkle(text: str, data) -> str:
    """`text` with comments after random lines and on their own between random lines
    (never inside a string), indented at random."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    inside_strings = _string_lines(text)
    out: list[str] = []
    count = 0
    for number, line in enumerate(lines, start=1):
        if number not in inside_strings and data.draw(st.integers(0, 3)) == 0:
            out.append(" " * data.draw(st.integers(0, 6)) + f"# own {count}")
            count += 1
        if number + 1 not in inside_strings and data.draw(st.integers(0, 3)) == 0:
            line += " " * data.draw(st.integers(0, 2)) + f"# end {count}"
            count += 1
        out.append(line)
    if data.draw(st.booleans()):
        out.append(f"# last {count}")
    return "\n".join(out) + "\n"


@GENERATED
@given(strategies.files, st.data())
def test_comments_sprinkled_on_generated_files_survive(file: n.File, data):
    """Comments after any line and on their own line between any two lines (outside
    strings) keep their text and order, and the result is a fixed point."""
    text = _sprinkle(format_file(file), data)
    assert parse_text(text).diagnostics == ()
    assert_faithful(text)


@GENERATED
@given(st.sampled_from(EXAMPLES), st.data())
def test_comments_sprinkled_on_example_files_survive(path: Path, data):
    """The same on hand-written files: one-line blocks, `;`, `\"\"\"` strings."""
    text = _sprinkle(path.read_text(encoding="utf-8"), data)
    assert not any(d.code == "FL100" for d in parse_text(text).diagnostics)
    assert_faithful(text)

NODE_TYPES = {cls for cls in vars(n).values()
              if isinstance(cls, type) and issubclass(cls, n.Node)} - {
    n.Node, n.Step, n.File, n.Comment, n.InvalidLit}  # no FL101, no comments in generated ASTs


def test_strategy_covers_every_node_type():
    seen: set[type] = set()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategies.files)
    def collect(file: n.File):
        seen.update(type(node) for d in file.declarations for node in d.walk())

    collect()
    assert NODE_TYPES - seen == set()
