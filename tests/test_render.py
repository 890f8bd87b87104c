"""`flowlang render`: the diagram model, the DOT and Mermaid back ends, the counts
overlay, the command line and the gallery.

Golden files: tests/golden/render/{examples,conformance}/NAME.{dot,mmd} hold the
DOT and Mermaid text of every example and conformance flow and pipeline, and
variants/ a few with legend, counts and hostile text. After an intended change:

    FLOWLANG_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_render.py

The goldens are checked by the real tools: the DOT is laid out by Graphviz's
`dot` and the SVG must hold every label line; the Mermaid is drawn by Mermaid
itself (`mmdc`, with Chromium) with no parse error. Without those tools the
tests skip, except when the environment variable CI is set: then they fail.
"""
from __future__ import annotations

import argparse
import functools
import html
import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flowlang import cli, cli_render
from flowlang.compiler import compile_project
from flowlang.project import load_project
from flowlang.render import RENDERERS, diagram, read_counts, unknown_steps
from flowlang.render import dot as dot_backend
from flowlang.render import mermaid as mermaid_backend
from flowlang.render.style import (
    EDGES,
    KINDS,
    Diagram,
    Edge,
    Node,
    RenderError,
    action_kind,
    expr_text,
    shorten,
    wrap,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "render"
CORPORA = {"examples": ROOT / "examples",
           "conformance": ROOT.parent / "shared" / "conformance" / "ok"}
UPDATE = bool(os.environ.get("FLOWLANG_UPDATE_GOLDEN"))
IN_CI = bool(os.environ.get("CI"))
SUFFIX = {"dot": "dot", "mermaid": "mmd"}

def need(ok: bool, what: str) -> None:
    """Skip without a tool, but fail in CI, where .ci/run installs it."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing and CI is set: .ci/run must install it")
    pytest.skip(f"{what} is not installed")


def has_dot() -> bool:
    return shutil.which("dot") is not None


# ------------------------------------------------------------------ the corpus

def compile_text(tmp: Path, text: str, name: str = "case.flow") -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / name).write_text(text, encoding="utf-8")
    return compile_project(load_project([str(tmp)])).machines


@functools.cache
def machines(corpus: str) -> dict:
    return compile_project(load_project([str(CORPORA[corpus])])).machines


def corpus_cases() -> list[tuple[str, str]]:
    return [(corpus, name) for corpus, path in CORPORA.items() if path.is_dir()
            for name in sorted(machines(corpus))]


ESCAPING = r'''
form signup "Påmelding" { on submit { add to selection "Nyhetsbrev" } }

flow escaping "Tricky text: quotes \"q\", <tags> & æøå" {
  settings {
    email from "news@example.com"
    email reply_to "news@example.com"
    sms from "Nordlys"
  }
  trigger {
    on form signup submitted
    filter person.score >= 50 and not (person.country == "NO" or person.language is not set)
    exclude selection "A & B <test>"
  }
  success when person in selection "Kunder & venner"
  send email "Velkommen <&> \"æøå\"" {
    subject """Hei {{ person.first_name }} & <venner>: "tilbud" på æøå — and a long tail
      that goes on and on past sixty characters"""
  }
  again: wait 1 day 12 hours
  split "Hva nå? | {x}" {
    branch "Åpnet \"e-post\"" when opened email "Velkommen <&> \"æøå\"" {
      add to selection "Åpnere; #1"
    }
    branch "Ikke i S" when person not in selection "S" and person.score < 10 {
      wait until 2026-12-24 18:00
      goto again
    }
    otherwise exit {
      add to selection "Ingen respons `x`"
    }
  }
  split on person.country {
    "NO", "Ø" { update person { set language = "nb" } }
  }
  send sms {
    text "Hei {{ person.first_name }}! Svar STOPP for å melde deg av."
    no mobile exit { add to selection "Uten mobil" }
  }
  wait for clicked email "Velkommen <&> \"æøå\"" within 3 days else exit { add to selection "Passive" }
  exit { add to flow escaping }
}
'''


def big_flow(steps: int = 60) -> str:
    """A flow of `steps` states with splits nested three deep."""
    counter = itertools.count(1)

    def block(budget: int, depth: int) -> list[str]:
        lines: list[str] = []
        while budget > 0:
            i = next(counter)
            if depth < 3 and budget >= 8 and i % 4 == 0:
                inner = (budget - 2) // 3
                lines.append(f'split "Check {i}" {{')
                for head in (f'branch "Hot {i}" when person.score >= {i}',
                             f'branch "Nordic {i}" when person.country in ["NO", "SE"]',
                             "otherwise"):
                    lines.append(f"  {head} {{")
                    lines += ["    " + line for line in block(inner, depth + 1)]
                    lines.append("  }")
                lines.append("}")
                budget -= 1 + 3 * inner
            else:
                lines.append({
                    0: f'send email "Step {i}" {{ subject "Step {i} for {{{{ person.first_name }}}}" }}',
                    1: "wait 1 day",
                    2: f"update person {{ increase score by {i} }}",
                }[i % 3])
                budget -= 1
        return lines

    return ('flow big "A generated flow" {\n'
            '  settings { email from "a@example.com"; email reply_to "a@example.com" }\n'
            + "\n".join("  " + line for line in block(steps, 0)) + "\n}\n")


@functools.cache
def simulated() -> dict:
    """The gallery's simulation of the newsletter welcome flow, as its JSON."""
    gallery = load_gallery()
    ms = machines("examples")
    return _simulation_json(ms, gallery.SIMULATION)


def _simulation_json(ms, s) -> dict:
    import datetime as dt

    from flowlang.simulate import parse_time, read_jsonl, simulate

    timezone = ms[s["flow"]]["settings"]["timezone"]
    sim = simulate(ms, s["flow"], read_jsonl(str(ROOT / s["participants"])),
                   read_jsonl(str(ROOT / s["events"])),
                   start=parse_time(s["start"], timezone, "--start"), until=s["until"],
                   today=dt.date(2026, 1, 1))
    return json.loads(json.dumps(sim.result()))


@functools.cache
def load_gallery():
    spec = importlib.util.spec_from_file_location("gallery", ROOT / "tools" / "gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _escaping_machine() -> dict:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        return compile_text(Path(tmp), ESCAPING)["escaping"]


#: Extra goldens: name -> (machine, counts, legend).
VARIANTS = {
    "newsletter_welcome-legend-counts": lambda: (
        machines("examples")["newsletter_welcome"], read_counts(simulated()), True),
    "lead_outreach-legend": lambda: (machines("examples")["lead_outreach"], None, True),
    "lead_pipeline-legend": lambda: (machines("examples")["lead_pipeline"], None, True),
    "escaping-legend": lambda: (_escaping_machine(), None, True),
}


def rendered(case: tuple[str, str], fmt: str) -> str:
    corpus, name = case
    if corpus == "variants":
        machine, counts, legend = VARIANTS[name]()
    else:
        machine, counts, legend = machines(corpus)[name], None, False
    return RENDERERS[fmt].render(diagram(machine, counts), legend=legend)


def all_cases() -> list[tuple[str, str]]:
    return corpus_cases() + [("variants", name) for name in VARIANTS]


def case_id(case) -> str:
    return "/".join(case)


# -------------------------------------------------------------------- goldens

def check_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    hint = "run FLOWLANG_UPDATE_GOLDEN=1 pytest tests/test_render.py if the change is intended"
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: {hint}"
    assert text == path.read_text(encoding="utf-8"), f"{path.relative_to(ROOT)} differs: {hint}"


@pytest.mark.parametrize("fmt", ["dot", "mermaid"])
@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_golden(case, fmt):
    check_golden(GOLDEN / case[0] / f"{case[1]}.{SUFFIX[fmt]}", rendered(case, fmt))


def test_every_example_and_conformance_machine_has_goldens():
    assert CORPORA["examples"].is_dir()
    wanted = {GOLDEN / c / f"{n}.{s}" for c, n in all_cases() for s in SUFFIX.values()}
    present = {p for p in GOLDEN.rglob("*") if p.is_file()}
    if not CORPORA["conformance"].is_dir():  # conformance lives beside the repository
        present = {p for p in present if p.parent.name != "conformance"}
    orphans = sorted(present - wanted)
    if UPDATE:
        for orphan in orphans:
            orphan.unlink()
        return
    assert not orphans, f"golden files of machines that are gone: {orphans}"
    assert {c for c, _ in corpus_cases()} >= {"examples"}


def test_rendering_is_deterministic():
    machine = machines("examples")["newsletter_welcome"]
    for fmt in SUFFIX:
        assert RENDERERS[fmt].render(diagram(machine), legend=True) == \
            RENDERERS[fmt].render(diagram(machine), legend=True)


# ------------------------------------------------------- checked by Graphviz

def svg_text_lines(svg: str) -> set[str]:
    return {html.unescape(t).strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)}


def label_lines(d: Diagram) -> set[str]:
    lines = {line for n in d.nodes for line in (*n.title, *n.lines, *n.counts)}
    lines |= {line for e in d.edges for line in e.label}
    return {line.strip() for line in lines if line.strip()}


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_dot_lays_out_the_golden_and_shows_every_label(case):
    need(has_dot(), "Graphviz's `dot` program")
    source = (GOLDEN / case[0] / f"{case[1]}.dot").read_text(encoding="utf-8") if not UPDATE \
        else rendered(case, "dot")
    svg = dot_backend.pipe(source, "svg").decode("utf-8")
    corpus, name = case
    machine, counts, _ = VARIANTS[name]() if corpus == "variants" else (machines(corpus)[name], None, 0)
    missing = label_lines(diagram(machine, counts)) - svg_text_lines(svg)
    assert not missing, f"not in the SVG: {sorted(missing)}"


def svg_size(svg: str) -> tuple[float, float]:
    match = re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    assert match, svg[:300]
    return float(match.group(1)), float(match.group(2))


def test_a_generated_flow_of_60_steps_with_nested_splits_stays_in_bounds(tmp_path):
    machine = compile_text(tmp_path, big_flow(60))["big"]
    assert len(machine["states"]) >= 60
    assert sum(s["kind"] == "split" for s in machine["states"]) >= 4
    d = diagram(machine)
    mermaid = RENDERERS["mermaid"].render(d)  # within Mermaid's limits
    assert len(mermaid) < mermaid_backend.MAX_TEXT
    need(has_dot(), "Graphviz's `dot` program")
    svg = RENDERERS["svg"].render(d)
    width, height = svg_size(svg)
    # about 1,400 x 1,300 pt with Graphviz 2.43: wide enough to show the three
    # levels of branches side by side, never a ribbon or a poster
    assert 400 < width < 3000 and 600 < height < 3500, (width, height)
    assert not label_lines(d) - svg_text_lines(svg)


def test_png_needs_a_file_and_is_a_png(tmp_path, run):
    need(has_dot(), "Graphviz's `dot` program")
    out = tmp_path / "welcome.png"
    code, _, err = run("render", str(CORPORA["examples"]), "--flow", "newsletter_welcome",
                       "-o", str(out))
    assert code == 0, err
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


# -------------------------------------------------------- checked by Mermaid

def mmdc() -> str | None:
    candidates = [os.environ.get("MMDC"), str(ROOT / ".ci" / "node_modules" / ".bin" / "mmdc"),
                  shutil.which("mmdc")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def chromium() -> str | None:
    candidates = [os.environ.get("PUPPETEER_EXECUTABLE_PATH"), shutil.which("chromium"),
                  shutil.which("chromium-browser"), shutil.which("google-chrome")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def mermaid_text_lines(svg: str) -> set[str]:
    text = re.sub(r"<br\s*/?>", "\n", svg)
    text = re.sub(r"<style.*?</style>", "", text, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", "\n", text))
    return {line.strip().removeprefix(mermaid_backend.COUNT_PREFIX) for line in text.splitlines()
            if line.strip()}


@pytest.mark.slow
def test_mermaid_draws_every_golden_without_an_error(tmp_path):
    """One `mmdc` run over a Markdown file of every golden (and the generated
    60-step flow): Mermaid must parse and draw each, with every label line."""
    tool, browser = mmdc(), chromium()
    need(tool is not None, "mermaid-cli (`mmdc`; npm install --prefix .ci @mermaid-js/mermaid-cli)")
    need(browser is not None, "Chromium (apt-get install chromium)")
    charts = []
    for case in all_cases():
        path = GOLDEN / case[0] / f"{case[1]}.mmd"
        text = rendered(case, "mermaid") if UPDATE else path.read_text(encoding="utf-8")
        corpus, name = case
        machine, counts, _ = VARIANTS[name]() if corpus == "variants" else (machines(corpus)[name], None, 0)
        charts.append((case_id(case), text, label_lines(diagram(machine, counts))))
    big = diagram(compile_text(tmp_path / "big", big_flow(60))["big"])
    charts.append(("generated/big", RENDERERS["mermaid"].render(big), label_lines(big)))
    markdown = "\n".join(f"## {name}\n\n```mermaid\n{text}```\n" for name, text, _ in charts)
    (tmp_path / "charts.md").write_text(markdown, encoding="utf-8")
    config = tmp_path / "puppeteer.json"
    config.write_text(json.dumps({"executablePath": browser, "args": CHROMIUM_ARGS}))
    result = subprocess.run([tool, "-p", str(config), "-i", str(tmp_path / "charts.md"),
                             "-o", str(tmp_path / "out.md")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for i, (name, _, lines) in enumerate(charts, 1):
        svg = (tmp_path / f"out-{i}.svg").read_text(encoding="utf-8")
        assert "Syntax error" not in svg, name
        missing = lines - mermaid_text_lines(svg)
        assert not missing, f"{name}: not in Mermaid's SVG: {sorted(missing)}"


# ------------------------------------------------------------ the model

def test_kinds_come_from_state_kinds_and_declared_effects():
    def action(*verbs, manual=False):
        return {"action": "x", "effects": [{"verb": v, "kind": "k"} for v in verbs],
                "manual": manual}
    assert action_kind(action("sends")) == "message"
    assert action_kind(action("creates")) == "crm"
    assert action_kind(action("hands_over")) == "crm"
    assert action_kind(action("adds", "sends")) == "message"
    assert action_kind(action("posts")) == "action"  # a project's own verb
    assert action_kind(action()) == "action"


def test_a_projects_own_action_is_drawn_by_its_declaration(tmp_path):
    ms = compile_text(tmp_path, '''
action "post to slack {text}" {
  for person
  setting channel "{text}" required
  effect posts message
}
action "book a call {text}" {
  for person
  manual
  effect creates activity
}
flow own {
  post to slack "New signup" { channel "#sales" }
  book a call "Intro"
}
''')
    d = diagram(ms["own"])
    nodes = {n.id: n for n in d.nodes}
    assert nodes["post-to-slack-new-signup"].kind == "action"
    call = nodes["book-a-call-intro"]
    assert (call.kind, call.manual) == ("crm", True)
    assert call.title == ('book a call "Intro"',)


EXPRESSIONS = [
    ({"op": ">=", "args": [{"field": ["score"]}, {"const": 50}]}, "person.score >= 50"),
    ({"happened": "email.opened", "match": {"email": "Welcome"}}, 'opened email "Welcome"'),
    ({"happened": "link.clicked", "match": {"link": "pricing"}}, "clicked link pricing"),
    ({"happened": "form.submitted", "match": {"form": "signup"}}, "submitted form signup"),
    ({"member": "selection", "name": "S"}, 'person in selection "S"'),
    ({"op": "not", "args": [{"member": "project", "name": "P"}]}, 'person not in project "P"'),
    ({"op": "not", "args": [{"op": "is set", "args": [{"field": ["mobile"]}]}]},
     "person.mobile is not set"),
    ({"op": "is set", "args": [{"field": ["company", "name"]}]}, "person.company.name is set"),
    ({"op": "and", "args": [{"op": "or", "args": [{"field": ["a"]}, {"field": ["b"]}]},
                            {"op": "not", "args": [{"field": ["c"]}]}]},
     "(person.a or person.b) and not person.c"),
    ({"op": "or", "args": [{"op": "and", "args": [{"field": ["a"]}, {"field": ["b"]}]},
                           {"field": ["c"]}]}, "person.a and person.b or person.c"),
    ({"op": "in", "args": [{"field": ["country"]}, {"list": ["NO", "SE"]}]},
     'person.country in ["NO", "SE"]'),
    ({"op": "<", "args": [{"field": ["born"]}, {"const": "2000-01-01", "type": "date"}]},
     "person.born < 2000-01-01"),
    ({"op": "==", "args": [{"field": ["name"]}, {"const": 'say "hi"'}]},
     'person.name == "say \\"hi\\""'),
    ({"op": "==", "args": [{"field": ["vip"]}, {"const": True}]}, "person.vip == true"),
    ({"happened": "custom.thing", "match": {"k": "v"}}, 'happened custom.thing (k "v")'),
]


@pytest.mark.parametrize("node, text", EXPRESSIONS, ids=[t for _, t in EXPRESSIONS])
def test_expressions_read_back_as_source(node, text):
    assert expr_text(node, "person") == text


def test_every_condition_of_the_corpus_reads_back_as_source_words():
    for corpus, name in corpus_cases():
        machine = machines(corpus)[name]
        for state in machine.get("states", ()):
            for branch in state.get("branches", ()):
                if "condition" in branch:
                    text = expr_text(branch["condition"], machine["participant"])
                    assert "happened" not in text and "?" not in text, (name, text)


def test_labels_wrap_and_shorten():
    assert all(len(line) <= 28 for line in wrap("a fairly long label that must be wrapped somewhere"))
    assert wrap("subject: Hi {{ person.first_name }}, welcome") == \
        ("subject: Hi", "{{ person.first_name }},", "welcome")
    assert shorten("x" * 100).endswith("…") and len(shorten("x" * 100)) == 60
    assert shorten("a\n   b") == "a b"


def test_escaping_in_dot():
    text = rendered(("variants", "escaping-legend"), "dot")
    assert "exclude selection &quot;A &amp; B<BR/>&lt;test&gt;&quot;" in text
    assert "Velkommen &lt;&amp;&gt; \\&quot;æøå\\&quot;" in text
    assert "{{ person.first_name }}" in text
    assert '"Tricky text: quotes \\"q\\", <tags> & æøå (flow escaping)"' in text
    assert "…" in text  # the long subject is cut


def test_escaping_in_mermaid():
    text = rendered(("variants", "escaping-legend"), "mermaid")
    body = text.split("flowchart TD", 1)[1]
    assert '#quot;' in body and "#lt;" in body and "#amp;" in body and "#35;1" in body
    for label in re.findall(r'"([^"]*)"', body):
        assert "<" not in label.replace("<br/>", ""), label
    assert re.search(r"^  s_again\[/", body, re.M)
    assert "title: \"Tricky text: quotes \\\"q\\\", ‹tags› ＆ æøå (flow escaping)\"" in text


def test_mermaid_node_ids_are_safe_and_distinct():
    nodes = (Node("#trigger", "trigger", ("t",)), Node("trigger", "wait", ("w",)),
             Node("a-b/c", "wait", ("x",)), Node("a_b_c", "wait", ("y",)))
    d = Diagram("x", "x", "TB", nodes, (Edge("#trigger", "trigger", "next"),))
    text = mermaid_backend.render(d)
    ids = re.findall(r"^  (\w+)[\[(>{]", text, re.M)
    assert ids == ["s_trigger", "s_trigger_2", "s_a_b_c", "s_a_b_c_2"]


def test_the_visual_language_is_the_same_in_both_back_ends():
    d = diagram(_escaping_machine())
    dot_text, mermaid_text = dot_backend.render(d), mermaid_backend.render(d)
    for node in d.nodes:
        look = KINDS[node.kind]
        assert f"shape={look.dot_shape}" in dot_text
        assert f"fill:{look.fill},stroke:{look.stroke}" in mermaid_text
    assert "constraint=false" in dot_text  # the goto
    for kind in d.edge_kinds:
        assert EDGES[kind].mermaid in mermaid_text


def test_the_flow_diagram_has_the_trigger_splits_exits_and_goto():
    d = diagram(_escaping_machine())
    nodes = {n.id: n for n in d.nodes}
    trigger = nodes["#trigger"]
    assert trigger.lines[0] == "on form signup submitted"
    assert any("exclude selection" in line for line in trigger.lines)
    edges = {(e.tail, e.head, e.kind) for e in d.edges}
    assert ("split-hva-n-x", "split-hva-n-x#otherwise-exit", "exit") in edges
    assert ("split-hva-n-x/ikke-i-s/goto-again", "again", "goto") in edges
    timeout = next(e for e in d.edges if e.tail.startswith("wait-for") and e.kind == "exit")
    assert timeout.label == ("after 3 days: else exit",)
    assert nodes[timeout.head].lines == ('add to selection "Passive"',)
    branch = next(e for e in d.edges if e.label and e.label[0] == "Ikke i S")
    assert branch.label[1:] == ('person not in selection "S"', "and person.score < 10")


def test_random_split_weights_and_manual_steps():
    d = diagram(machines("examples")["newsletter_winback"])
    labels = [e.label for e in d.edges if e.kind == "branch"]
    assert ("Question", "50%") in labels and ("Offer", "50%") in labels
    outreach = diagram(machines("examples")["lead_outreach"])
    manual = [n for n in outreach.nodes if n.manual]
    assert {n.id for n in manual} >= {"draft-email-intro", "call"}
    assert "stroke-dasharray" in mermaid_backend.render(outreach)
    assert "dashed" in dot_backend.render(outreach)


def test_the_pipeline_runs_left_to_right_with_moves_and_handlers():
    d = diagram(machines("examples")["lead_pipeline"])
    assert d.direction == "LR"
    nodes = {n.id: n for n in d.nodes}
    assert nodes["qualified"].kind == "final" and nodes["new"].kind == "stage"
    assert "on enter:" in nodes["attempting"].lines
    move = next(e for e in d.edges if (e.tail, e.head) == ("new", "attempting"))
    assert move.kind == "move" and "linkedin message sent" in " ".join(move.label)
    handlers = [n for n in d.nodes if n.kind == "handler"]
    assert len(handlers) == 2 and all(n.group == "handlers" for n in handlers)
    assert any(e.kind == "creates" and e.head == "new" for e in d.edges)
    assert "rankdir=LR" in dot_backend.render(d)
    assert "flowchart LR" in mermaid_backend.render(d)


# ---------------------------------------------------------------- counts

def test_counts_overlay_from_a_simulation():
    data = simulated()
    d = diagram(machines("examples")["newsletter_welcome"], read_counts(data))
    nodes = {n.id: n for n in d.nodes}
    admitted = sum(1 for p in data["participants"] if p["path"])
    assert nodes["#trigger"].counts == (f"passed {admitted}",)
    assert nodes["#trigger"].volume == 1.0
    for step, statuses in data["counts"].items():
        line = " ".join(nodes[step].counts)
        for status, n in statuses.items():
            word = {"completed_success": "success"}.get(status, status)
            assert f"{word} {n}" in line
    first = next(e for e in d.edges if e.tail == "#trigger")
    assert first.traffic == admitted and first.weight == 1.0 and first.label[-1] == f"n = {admitted}"
    unvisited = [n for n in d.nodes if not n.volume]
    assert unvisited and all(not n.counts for n in unvisited)
    assert "style " in mermaid_backend.render(d) and "penwidth" in dot_backend.render(d)


def test_counts_dropouts_at_a_split_take_its_otherwise_exit():
    data = simulated()
    split = "split-what-did-they-do"
    dropped = [p for p in data["participants"] if p["status"] == "dropout" and p["path"][-1] == split]
    assert dropped  # the examples have someone who did nothing
    d = diagram(machines("examples")["newsletter_welcome"], read_counts(data))
    edge = next(e for e in d.edges if e.tail == split and e.kind == "exit")
    assert edge.traffic == len(dropped)


def test_counts_in_the_status_shape_without_paths():
    counts = read_counts({"steps": {"wait-2-workdays": {"active": 3}, "(queued)": {"queued": 2},
                                    "gone-step": {"active": 1}}})
    assert counts.paths is None
    d = diagram(machines("examples")["newsletter_welcome"], counts)
    nodes = {n.id: n for n in d.nodes}
    assert nodes["wait-2-workdays"].counts == ("active 3",)
    assert nodes["#trigger"].counts == ("queued 2",)
    assert nodes["wait-2-workdays"].volume == 1.0
    assert unknown_steps(d, counts) == ["gone-step"]


@pytest.mark.parametrize("data", [[], {"counts": []}, {"x": 1}, {"steps": {"a": {"active": -1}}},
                                  {"steps": {"a": {"active": "3"}}}, {"steps": {"a": 3}}])
def test_bad_counts_are_refused(data):
    with pytest.raises(RenderError):
        read_counts(data)


# ---------------------------------------------------------- Mermaid limits

def test_mermaid_refuses_more_edges_than_it_draws():
    nodes = tuple(Node(f"n{i}", "wait", (f"wait {i}",)) for i in range(502))
    edges = tuple(Edge(f"n{i}", f"n{i + 1}", "next") for i in range(501))
    with pytest.raises(RenderError, match="maxEdges of 500"):
        mermaid_backend.render(Diagram("long", "long", "TB", nodes, edges))


def test_mermaid_refuses_more_text_than_it_reads():
    nodes = tuple(Node(f"n{i}", "wait", ("x" * 28,) * 20) for i in range(100))
    with pytest.raises(RenderError, match="maxTextSize of 50,000"):
        mermaid_backend.render(Diagram("wide", "wide", "TB", nodes, ()))


# ------------------------------------------------------------ the command

@pytest.fixture
def run(monkeypatch, capsys):
    """`flowlang ARGS…` through cli.main, with `render` registered as cli.py will."""
    original = cli.build_parser

    def build():
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "render" not in sub.choices:
            cli_render.register(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)

    def invoke(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return invoke


EX = str(CORPORA["examples"])


@pytest.mark.parametrize("fmt, start", [("dot", "digraph lead_outreach {"), ("mermaid", "---")])
def test_text_formats_go_to_stdout(run, fmt, start):
    code, out, err = run("render", EX, "--flow", "lead_outreach", "-f", fmt)
    assert code == 0, err
    assert out.startswith(start)
    assert out == rendered(("examples", "lead_outreach"), fmt)


def test_output_file_and_format_from_its_suffix(run, tmp_path):
    out = tmp_path / "p.mmd"
    code, stdout, err = run("render", EX, "--pipeline", "lead_pipeline", "-o", str(out), "--legend")
    assert code == 0 and stdout == ""
    assert out.read_text(encoding="utf-8").startswith("---\ntitle:")
    assert "wrote pipeline lead_pipeline as mermaid" in err


def test_png_to_stdout_is_a_usage_error(run):
    code, out, err = run("render", EX, "--flow", "lead_outreach", "-f", "png")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "-o FILE" in err and "Traceback" not in err


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_without_the_dot_program_svg_and_png_say_so(run, monkeypatch, tmp_path, fmt):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, out, err = run("render", EX, "--flow", "lead_outreach", "-f", fmt,
                         "-o", str(tmp_path / f"x.{fmt}"))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "`dot` program" in err and "Traceback" not in err


def test_svg_goes_to_stdout(run):
    need(has_dot(), "Graphviz's `dot` program")
    code, out, _ = run("render", EX, "--flow", "lead_outreach", "-f", "svg")
    assert code == 0 and "<svg" in out and "draft email &quot;Intro&quot;" in out


def test_an_unknown_name_lists_the_known_ones(run):
    code, _, err = run("render", EX, "--flow", "nope")
    assert code == 2
    assert err.strip() == ("flowlang: no flow `nope` in the project (flows: deal_sequence, "
                           "lead_outreach, newsletter_onboarding, newsletter_welcome, "
                           "newsletter_winback)")
    code, _, err = run("render", EX, "--flow", "lead_pipeline")
    assert code == 2 and "use --pipeline lead_pipeline" in err
    code, _, err = run("render", EX, "--pipeline", "nope")
    assert code == 2 and "(pipelines: lead_pipeline)" in err


def test_flow_or_pipeline_is_required(run):
    code, _, err = run("render", EX)
    assert code == 2 and "--flow" in err


def test_a_project_with_errors_is_not_drawn(run, tmp_path):
    (tmp_path / "bad.flow").write_text("flow f {\n  wait three days\n}\n", encoding="utf-8")
    code, out, err = run("render", str(tmp_path), "--flow", "f")
    assert code == 1 and out == "" and "FL100" in err


def test_counts_from_a_file(run, tmp_path):
    path = tmp_path / "sim.json"
    path.write_text(json.dumps(simulated()), encoding="utf-8")
    code, out, err = run("render", EX, "--flow", "newsletter_welcome", "--counts", str(path),
                         "--legend")
    assert code == 0, err
    assert out == rendered(("variants", "newsletter_welcome-legend-counts"), "dot")


@pytest.mark.parametrize("content, message", [("{", "not valid JSON"), ('{"a": 1}', "expected")])
def test_bad_counts_file_is_a_usage_error(run, tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content, encoding="utf-8")
    code, _, err = run("render", EX, "--flow", "newsletter_welcome", "--counts", str(path))
    assert code == 2 and message in err and err.count("\n") == 1


def test_counts_of_steps_the_flow_lacks_are_a_warning(run, tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"steps": {"old-step": {"active": 1}}}', encoding="utf-8")
    code, _, err = run("render", EX, "--flow", "newsletter_welcome", "--counts", str(path))
    assert code == 0 and "old-step" in err


def test_over_mermaids_limits_is_a_usage_error(run, monkeypatch):
    monkeypatch.setattr(mermaid_backend, "MAX_EDGES", 5)
    code, out, err = run("render", EX, "--flow", "newsletter_welcome", "-f", "mermaid")
    assert (code, out) == (2, "")
    assert "maxEdges of 5" in err and err.count("\n") == 1


# --------------------------------------------------------------- the gallery

def test_gallery_is_up_to_date():
    """docs/gallery: each committed SVG was drawn from the DOT text the examples
    give today (its hash is in the picture), and redrawing it gives the same
    picture but for Graphviz's version line and coordinates."""
    gallery = load_gallery()
    items = gallery.entries()
    stale = gallery.stale(items)
    assert not stale, f"stale: {stale}; run .venv/bin/python tools/gallery.py"
    need(has_dot(), "Graphviz's `dot` program")
    for entry in items:
        committed = (gallery.GALLERY / f"{entry.file}.svg").read_text(encoding="utf-8")
        redrawn = gallery.svg(entry)
        if gallery.graphviz_version(redrawn) != gallery.graphviz_version(committed):
            continue  # another Graphviz draws other shapes and paths: the hash must do
        assert gallery.normalise(redrawn) == gallery.normalise(committed), entry.file


def test_gallery_normalises_graphviz_noise():
    gallery = load_gallery()
    a = ('<!-- Generated by graphviz version 2.43.0 (0)\n -->\n'
         '<svg width="10pt" height="20pt" viewBox="0 0 10 20"><text x="1.5" y="2">a</text></svg>')
    b = ('<!-- Generated by graphviz version 9.0.0 (20230911.1827)\n -->\n'
         '<svg width="11pt" height="21pt" viewBox="0 0 11 21"><text x="1.7" y="3">a</text></svg>')
    assert gallery.normalise(a) == gallery.normalise(b)
    assert gallery.normalise(a) != gallery.normalise(b.replace(">a<", ">b<"))
