"""The control-flow graph (`flowlang.check.cfg`) and the rules read off it: FL401
unreachable steps, FL402 loops without a wait, FL403 shadowed branches, FL404
behaviour conditions before the send, FL405 `wait until` order, FL407 hand-over
cycles.

Checker cases also live as data in `tests/cases/check/*.flow`: each lists its
`# expect: CODE@LINE` lines and must give exactly those diagnostics, errors and
warnings alike (an `ok_*` file none at all); a `# xfail: reason` line marks a
known gap. One parametrised test below runs them all.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowlang import nodes as n
from flowlang.check import analyse, check_project
from flowlang.check.cfg import END, ENTRY, build, describe, flow_graphs
from flowlang.check.flowgraph import _Cases
from flowlang.check.steps import walk
from flowlang.project import load_project, project_from_texts
from flowlang.syntax import parse_text

TESTS = Path(__file__).resolve().parent
CASES = sorted((TESTS / "cases" / "check").glob("*.flow"))
CONFORMANCE_OK = TESTS.parent.parent / "shared" / "conformance" / "ok"
EXAMPLES = sorted((TESTS.parent / "examples").rglob("*.flow"))
EXPECT = re.compile(r"^#\s*expect:\s*(FL\d{3})@(\d+)\s*$", re.M)
XFAIL = re.compile(r"^#\s*xfail:\s*(.+)$", re.M)

#: Cases written before FL403 existed whose branches really are shadowed: they
#: need an `# expect: FL403@LINE` line (then drop them from here).
MISSING_HEADERS: dict[str, str] = {}

SENDER = 'settings { email from "a@acme.example"; email reply_to "a@acme.example" }'


def diagnostics(*texts: str, codes: tuple[str, ...] = ()) -> list:
    project = project_from_texts({f"f{i}.flow": text for i, text in enumerate(texts)})
    found = check_project(project)
    return [d for d in found if not codes or d.code in codes]


def pairs(*texts: str, codes: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    return sorted((d.code, d.line) for d in diagnostics(*texts, codes=codes))


def flow(body: str, *, name: str = "f", header: str = SENDER) -> str:
    """A flow with the given steps, written from line 3 on (line 1 `flow`, line 2 settings)."""
    return f"flow {name} {{\n  {header}\n{body.lstrip(chr(10))}\n}}\n"


# ---------------------------------------------------------------------- data cases

def _case_param(path: Path):
    text = path.read_text(encoding="utf-8")
    reason = MISSING_HEADERS.get(path.name) or (XFAIL.search(text) or [None, None])[1]
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(path, id=path.name, marks=marks)


@pytest.mark.parametrize("path", [_case_param(p) for p in CASES])
def test_check_case(path: Path):
    want = {(code, int(line)) for code, line in EXPECT.findall(path.read_text(encoding="utf-8"))}
    if path.name.startswith("ok_"):
        assert not want, "an ok_ case expects nothing"
    got = {(d.code, d.line) for d in check_project(load_project([str(path)]))}
    assert got == want


def test_the_cases_cover_every_rule_both_ways():
    names = [p.name for p in CASES]
    for code in ("FL401", "FL402", "FL403", "FL404", "FL405", "FL407"):
        assert any(name.startswith(code) for name in names), code
    for code in ("FL401", "FL402", "FL403", "FL404", "FL405"):
        assert any(name.startswith(f"ok_{code}") for name in names), code


@pytest.mark.skipif(not CONFORMANCE_OK.is_dir(), reason="needs ../shared/conformance")
def test_conformance_ok_has_no_path_diagnostic():
    found = check_project(load_project([str(CONFORMANCE_OK)]))
    assert [d for d in found if d.code[:3] in ("FL4", "FL5")] == []


@pytest.mark.skipif(not EXAMPLES, reason="no examples yet")
def test_examples_have_no_path_diagnostic():
    found = check_project(load_project([str(p) for p in EXAMPLES]))
    assert [(d.file, d.line, d.code, d.message) for d in found if d.code[:3] in ("FL4", "FL5")] == []


# ---------------------------------------------------------------------- the graph

def graph_of(text: str):
    ctx = analyse(project_from_texts({"g.flow": text}))
    (graph,) = flow_graphs(ctx)
    return graph


def node(graph, kind, **where):
    found = [x for x in graph.nodes if isinstance(x.ast, kind)
             and all(getattr(x.ast, k) == v for k, v in where.items())]
    assert len(found) == 1, found
    return found[0]


def command(graph, text: str):
    """The node of the action line written `text` (`add to selection "A"`)."""
    found = [x for x in graph.nodes if isinstance(x.ast, n.Command) and describe(x.ast) == text]
    assert len(found) == 1, [describe(x.ast) for x in graph.nodes if x.ast is not None]
    return found[0]


def edges(graph, from_node) -> list[tuple[str, object]]:
    return [(e.kind, graph.nodes[e.target].ast if e.target not in (ENTRY, END) else e.target)
            for e in from_node.edges]


def test_graph_of_a_split_with_and_without_otherwise():
    graph = graph_of(flow("""
  split { branch "A" when person.score > 1 { add to selection "A" } }
  split {
    branch "B" when person.score > 2 { add to selection "B" }
    otherwise exit { add to selection "Out" }
  }
  complete"""))
    first, second = [x for x in graph.nodes if isinstance(x.ast, n.Split)]
    assert [k for k, _ in edges(graph, first)] == ["branch", "no match"]
    assert edges(graph, first)[1][1] is second.ast
    assert [k for k, _ in edges(graph, second)] == ["branch", "exit"]
    # a branch body falls through to the step after the split; an exit block ends
    assert edges(graph, command(graph, 'add to selection "A"')) == [("next", second.ast)]
    assert edges(graph, command(graph, 'add to selection "B"')) == [("next", node(graph, n.Complete).ast)]
    assert edges(graph, command(graph, 'add to selection "Out"')) == [("next", END)]


def test_random_split_always_takes_a_branch():
    graph = graph_of(flow("""
  split random {
    branch "A" 50% { add to selection "A" }
    branch "B" 50% { add to selection "B" }
  }
  complete"""))
    split = node(graph, n.Split)
    assert [k for k, _ in edges(graph, split)] == ["branch", "branch"]


def test_goto_is_a_back_edge_only_backwards():
    graph = graph_of(flow("""
  top: wait 1 day
  goto later
  later: add to selection "X"
  goto top"""))
    forward, backward = [x for x in graph.nodes if isinstance(x.ast, n.Goto)]
    assert [(e.kind, e.back) for e in forward.edges] == [("goto", False)]
    assert [(e.kind, e.back) for e in backward.edges] == [("goto", True)]
    assert graph.nodes[backward.edges[0].target].ast.label.text == "top"


def test_waits_are_marked():
    graph = graph_of(flow("""
  draft email "Hi" { subject "Hi" }
  wait 1 day
  wait until 2026-12-01
  wait for replied email "Hi"
  create activity "Call" { type call }
  add to flow f
  complete""", header="for deal\n  " + SENDER))
    waits = [x.ast for x in graph.nodes if x.wait]
    assert [type(w).__name__ for w in waits] == ["Command", "Wait", "WaitUntil", "WaitFor", "Command"]
    assert not command(graph, "add to flow f").wait


def test_wait_for_else_exit_and_no_mobile_exit_lead_out():
    graph = graph_of(flow("""
  wait for opened email "X" within 2 days else exit { add to selection "Timed out" }
  send sms { text "Hi"; no mobile exit { add to selection "No mobile" } }
  send sms { text "Ho"; no mobile skip }
  complete""", header='settings { sms from "ACME" }'))
    wait_for = node(graph, n.WaitFor)
    assert [k for k, _ in edges(graph, wait_for)] == ["timeout", "next"]
    first, second = [x for x in graph.nodes if isinstance(x.ast, n.Command) and x.ast.text == "send sms"]
    assert [k for k, _ in edges(graph, first)] == ["no mobile", "next"]
    assert [k for k, _ in edges(graph, second)] == ["next"]
    timed_out = graph.nodes[wait_for.edges[0].target]
    assert [t for _, t in edges(graph, timed_out)] == [END]


def test_complete_outcomes_are_alternatives():
    graph = graph_of(flow("""
  complete {
    success add to selection "Won"
    success add to flow f
    no success add to selection "Lost"
  }"""))
    complete = node(graph, n.Complete)
    kinds = edges(graph, complete)
    assert [k for k, _ in kinds] == ["success", "no success"]
    won = graph.node_of(kinds[0][1])
    assert [t for _, t in edges(graph, graph.nodes[won.edges[0].target])] == [END]


def test_graph_nodes_are_in_source_order_and_cover_every_step():
    text = flow("""
  a: add to selection "A"
  split {
    branch "X" when person.score > 1 { exit { add to selection "B" } }
    otherwise { wait 1 day }
  }
  goto a""")
    file = parse_text(text, "g.flow").file
    graph = graph_of(text)
    lines = [x.ast.span.line for x in graph.nodes[2:]]
    assert lines == sorted(lines)
    steps = list(walk(file.declarations[0].steps))
    assert [x.ast for x in graph.nodes[2:]] == steps


def test_build_works_on_any_statements():
    ctx = analyse(project_from_texts({"g.flow": 'form x { on submit { add to selection "A" } }'}))
    form = next(ctx.declarations(n.Form))
    graph = build(ctx, form.items[0].body.statements, form.items[0])
    assert len(graph.nodes) == 3 and graph.reachable() == {0, 1, 2}


# ---------------------------------------------------------------------- FL401

def test_fl401_once_per_run_at_its_first_step():
    found = diagnostics(flow("""
  exit
  add to selection "A"
  add to selection "B"
  wait 1 day"""), codes=("FL401",))
    assert [(d.line, d.severity.value) for d in found] == [(4, "warning")]
    assert '`add to selection "A"` and the 2 steps after it' in found[0].message
    assert "`exit`" in found[0].message and found[0].help


def test_fl401_not_for_a_step_reached_by_goto():
    assert pairs(flow("""
  wait 1 day
  goto there
  there: add to selection "A"
  complete"""), codes=("FL401",)) == []


def test_fl401_after_a_split_whose_branches_all_end():
    found = diagnostics(flow("""
  split {
    branch "A" when person.score > 1 { complete }
    otherwise { goto top }
  }
  top: wait 1 day
  complete"""), codes=("FL401",))
    assert found == []  # `top` is reached by the goto
    found = diagnostics(flow("""
  split {
    branch "A" when person.score > 1 { complete }
    otherwise exit
  }
  wait 1 day"""), codes=("FL401",))
    assert [d.line for d in found] == [7] and "every branch" in found[0].message


def test_fl401_not_inside_an_unreachable_split():
    assert pairs(flow("""
  complete
  split {
    branch "A" when person.score > 1 { complete; add to selection "A" }
  }"""), codes=("FL401",)) == [("FL401", 4)]


# ---------------------------------------------------------------------- FL402

def test_fl402_at_the_goto_with_the_label_related():
    (found,) = diagnostics(flow("""
  top: add to selection "A"
  split { branch "Again" when person.score > 1 { goto top } }
  complete"""), codes=("FL402",))
    assert (found.line, found.severity.value) == (4, "error")
    assert "`top`" in found.message
    assert [(r.line, r.message) for r in found.related] == [(3, "the loop starts here")]


@pytest.mark.parametrize("wait", ["wait 1 day", "wait until 2026-01-01", "wait for opened email \"A\""])
def test_fl402_not_when_the_loop_waits(wait):
    text = flow(f"""
  send email "A" {{ subject "A" }}
  top: add to selection "A"
  {wait}
  split {{ branch "Again" when person.score > 1 {{ goto top }} }}
  complete""")
    assert pairs(text, codes=("FL402",)) == []


def test_fl402_when_only_one_way_round_waits():
    text = flow("""
  top: add to selection "A"
  split { branch "Slow" when person.score > 1 { wait 1 day } }
  goto top""")
    assert pairs(text, codes=("FL402",)) == [("FL402", 5)]


def test_fl402_each_loop_of_a_file():
    text = flow("""
  a: add to selection "A"
  split {
    branch "A" when person.score > 1 { goto a }
    branch "B" when person.score > 0 { wait 1 day; goto a }
  }
  b: add to selection "B"
  split { branch "C" when person.score > 1 { goto b } }
  complete""")
    assert pairs(text, codes=("FL402",)) == [("FL402", 5), ("FL402", 9)]


# ---------------------------------------------------------------------- FL403

def shadowed(*conditions: str) -> list[bool]:
    """For each condition, whether a split with these branches never takes it."""
    nodes = []
    for condition in conditions:
        text = f'flow x {{ split {{ branch "A" when {condition} {{ complete }} }} }}'
        split = parse_text(text, "x.flow").file.declarations[0].steps[0]
        nodes.append(split.items[0].condition)
    table = _Cases(nodes).table()
    return [not any(row[j] and not any(row[:j]) for row in table) for j in range(len(nodes))]


@pytest.mark.parametrize("earlier, later, expected", [
    ("person.score >= 10", "person.score >= 50", True),
    ("person.score >= 50", "person.score >= 10", False),
    ("person.score >= 10", "person.score > 10", True),
    ("person.score > 10", "person.score >= 10", False),
    ("person.score < 10", "person.score <= 9.5", True),
    ("person.score == 5", "person.score == 5", True),
    ("person.score != 5", "person.score == 6", True),
    ("10 <= person.score", "person.score > 20", True),
    ('person.country in ["NO", "SE"]', 'person.country == "SE"', True),
    ('person.country == "SE"', 'person.country in ["NO", "SE"]', False),
    ('person.country not in ["NO"]', 'person.country is not set', True),
    ("person.score > 10", "person.score is not set", False),
    ("person.score is set", "person.score > 10", True),
    ('opened email "A"', 'opened email "A" and person.score > 3', True),
    ('opened email "A"', 'clicked email "A"', False),
    ('opened email "A" or clicked email "A"', 'clicked email "A"', True),
    ('person in selection "S"', 'person in selection "S"', True),
    ('person in selection "S"', 'person in selection "T"', False),
    ("not (person.score < 10)", "person.score >= 20", True),
    ("person.score > 1 and person.country == \"NO\"", "person.score > 5", False),
    ('person.last_name < "M"', 'person.last_name < "C"', False),  # strings: not judged
    ("person.score > person.id", "person.score > person.id", True),
])
def test_fl403_implication(earlier, later, expected):
    assert shadowed(earlier, later) == [False, expected]


def test_fl403_by_earlier_branches_together():
    assert shadowed("person.score < 10", "person.score >= 10", "person.score > 3") == [False, False, True]
    assert shadowed("person.score < 10", "person.score > 10", "person.score > 3") == [False, False, False]


def test_fl403_report_names_the_covering_branch():
    (found,) = diagnostics(flow("""
  split {
    branch "Warm" when person.score >= 10 { add to selection "Warm" }
    branch "Hot" when person.score >= 50 { add to selection "Hot" }
  }"""), codes=("FL403",))
    assert (found.line, found.severity.value) == (5, "warning")
    assert '"Hot"' in found.message and '"Warm"' in found.message
    assert [r.line for r in found.related] == [4]


def test_fl403_condition_never_true():
    (found,) = diagnostics(flow("""
  split { branch "None" when person.score > 5 and person.score < 3 { complete } }"""),
                           codes=("FL403",))
    assert "never true" in found.message


def test_fl403_zero_percent_random_branch():
    assert pairs(flow("""
  split random {
    branch "A" 100% { add to selection "A" }
    branch "B" 0% { add to selection "B" }
  }"""), codes=("FL403",)) == [("FL403", 5)]


def test_fl403_gives_up_on_too_many_cases():
    many = " and ".join(f'opened email "E{i}"' for i in range(14))
    assert _Cases([parse_text(f'flow x {{ split {{ branch "A" when {many} {{ complete }} }} }}',
                              "x.flow").file.declarations[0].steps[0].items[0].condition]).table() is None


# ---------------------------------------------------------------------- FL404

def test_fl404_at_the_branch_line_with_the_send_related():
    (found,) = diagnostics(flow("""
  split { branch "Yes" when person.score > 1 { send email "A" { subject "A" } } }
  split {
    branch "Read" when opened email "A" { complete }
  }"""), codes=("FL404",))
    assert (found.line, found.severity.value) == (5, "error")
    assert 'opened email "A"' in found.message
    assert [r.line for r in found.related] == [3]


def test_fl404_inside_not_and_never_sent():
    (found,) = diagnostics(flow("""
  wait for person.score > 1 and not clicked email "B" within 1 day"""), codes=("FL404",))
    assert found.line == 3 and "never sends" in found.message and found.related == ()


def test_fl404_not_when_sent_on_every_path():
    assert pairs(flow("""
  split {
    branch "X" when person.score > 1 { send email "A" { subject "A" } }
    otherwise { send email "A" { subject "B" } }
  }
  wait for opened email "A"
  split { branch "Y" when clicked email "A" or replied email "A" { complete } }"""),
                 codes=("FL404",)) == []


def test_fl404_a_loop_sends_too_late_the_first_time_round():
    assert pairs(flow("""
  top: wait 1 day
  split { branch "Y" when opened email "A" { complete } }
  send email "A" { subject "A" }
  goto top"""), codes=("FL404",)) == [("FL404", 4)]


def test_fl404_link_and_form_conditions_need_no_send():
    text = flow("""
  wait for clicked link pricing
  split { branch "Y" when submitted form signup { complete } }""")
    text += 'link pricing "https://x.example" { on click { add interest "P" } }\n'
    text += 'form signup { on submit { add to selection "S" } }\n'
    assert pairs(text, codes=("FL404",)) == []


# ---------------------------------------------------------------------- FL405

def test_fl405_at_the_later_wait_until():
    (found,) = diagnostics(flow("""
  wait until 2026-12-10 09:00
  add to selection "A"
  wait until 2026-12-10 08:00"""), codes=("FL405",))
    assert (found.line, found.severity.value) == (5, "warning")
    assert [r.line for r in found.related] == [3]


def test_fl405_only_on_one_path():
    assert pairs(flow("""
  split {
    branch "A" when person.score > 1 { wait until 2026-12-10 }
    otherwise { wait until 2026-12-01 }
  }
  wait until 2026-12-05"""), codes=("FL405",)) == [("FL405", 7)]


def test_fl405_not_for_equal_or_later_dates():
    assert pairs(flow("""
  wait until 2026-12-10
  wait until 2026-12-10
  wait until 2026-12-10 10:00"""), codes=("FL405",)) == []


# ---------------------------------------------------------------------- FL407

def test_fl407_across_files_at_the_last_hand_over_in_source_order():
    a = 'flow a {\n  add to selection "A"\n  exit { add to flow b }\n}\n'
    b = 'flow b {\n  add to selection "B"\n  complete { success add to flow a }\n}\n'
    (found,) = diagnostics(a, b, codes=("FL407",))
    assert (found.file, found.line, found.severity.value) == ("f1.flow", 3, "warning")
    assert "`a`" in found.message and "`b`" in found.message
    assert [(r.file, r.line) for r in found.related] == [("f0.flow", 3)]


def test_fl407_three_flows_once():
    texts = [f'flow {x} {{\n  exit {{ add to flow {y} }}\n}}\n' for x, y in ("ab", "bc", "ca")]
    assert pairs("".join(texts), codes=("FL407",)) == [("FL407", 8)]


def test_fl407_not_when_a_flow_waits_before_handing_over():
    a = 'flow a {\n  exit { add to flow b }\n}\n'
    b = 'flow b {\n  wait 1 day\n  exit { add to flow a }\n}\n'
    assert pairs(a + b, codes=("FL407",)) == []


def test_fl407_not_for_a_hand_over_without_a_way_back():
    a = 'flow a {\n  exit { add to flow b }\n}\n'
    b = 'flow b {\n  complete\n}\n'
    assert pairs(a + b, codes=("FL407",)) == []
