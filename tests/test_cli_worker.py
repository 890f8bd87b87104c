"""`flowlang run` and `flowlang status` over SQLite and PostgreSQL: in-process through
`flowlang.cli.main`, and real subprocesses stopped with SIGINT and SIGTERM."""
from __future__ import annotations

import io
import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowlang.cli import main

ROOT = Path(__file__).resolve().parent.parent
NEWSLETTER = ROOT / "examples" / "newsletter"
NEWSLETTER_FLOWS = ["newsletter_welcome", "newsletter_winback", "newsletter_onboarding"]

DRIP = """\
flow drip "Drip" {
  settings {
    email from "news@acme.example"
    email reply_to "news@acme.example"
  }
  send email "Hello" { subject "Hello {{ person.first_name }}" }
  pause1: wait 1 day
  send email "Again" { subject "Again, {{ person.first_name }}" }
  complete
}
"""

# the same flow without the wait: participants resting at `pause1` need a rule
DRIP_V2 = DRIP.replace("  pause1: wait 1 day\n", "")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flows.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def sqlite_db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'flows.db'}"


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def summary_of(err: str) -> dict:
    """The closing summary: the last line of stderr with --format json."""
    last = json.loads(err.strip().splitlines()[-1])
    assert last["event"] == "summary"
    return last


def status(capsys, db: str, *flows: str, letters: bool = False) -> dict:
    code, out, err = cli(capsys, "status", "--db", db, *flows, "--format", "json",
                         *(["--dead-letters"] if letters else []))
    assert code == 0, err
    return json.loads(out)


def people(path: Path, count: int, offset: int = 0) -> Path:
    path.write_text("".join(json.dumps({"id": f"p{i}", "data": {"first_name": f"P{i}"}}) + "\n"
                            for i in range(offset, offset + count)))
    return path


def drip_project(tmp_path: Path, text: str = DRIP) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / "drip.flow").write_text(text)
    return folder


# ---------------------------------------------------------------------- run
def test_run_newsletter_end_to_end(db, tmp_path, capsys):
    actions = tmp_path / "actions.jsonl"
    code, out, err = cli(capsys, "run", ROOT / "examples", "--db", db, "--deploy",
                         *[a for f in NEWSLETTER_FLOWS for a in ("--start", f)],
                         "--enroll", f"newsletter_welcome={NEWSLETTER / 'people.jsonl'}",
                         "--events", NEWSLETTER / "events.jsonl",
                         "--actions", actions, "--format", "json")
    assert code == 0, err
    assert out == ""  # the actions went to the file
    summary = summary_of(err)
    # structured logs before the summary: one JSON object a line
    logs = [json.loads(line) for line in err.strip().splitlines()[:-1]]
    assert {"deployed", "control", "enrolled", "ingested", "worker"} <= {e["event"] for e in logs}
    assert {d["change"] for d in summary["deployed"]} == {"new"}
    assert summary["stopped"] == "idle"
    # every person in the file has "enter_at": null: known, entering through the form event
    assert summary["enrolled"][0]["outcome"] == {"known": 6}
    assert summary["events"]["outcome"] == {"applied": 11}

    lines = [json.loads(line) for line in actions.read_text().splitlines()]
    assert lines and len({a["key"] for a in lines}) == len(lines)
    assert set(lines[0]) == {"key", "flow", "participant", "step", "action", "args", "settings",
                             "operations", "at"}
    welcome = [a for a in lines if a["action"] == "send email" and a["args"] == ["Welcome"]]
    assert {a["participant"] for a in welcome} == {"ann", "bo", "cy", "fi"}  # di: no consent; ed: excluded
    assert welcome[0]["settings"]["subject"].startswith("Welcome to the Nordlys newsletter")
    assert welcome[0]["key"].split(":")[1:] == [welcome[0]["participant"], "1", "send-email-welcome", "1"]

    report = status(capsys, db)
    flows = {f["name"]: f for f in report["flows"]}
    assert flows["newsletter_welcome"]["status"] == "running"
    assert flows["newsletter_welcome"]["participants"] == 4
    assert flows["newsletter_welcome"]["statuses"]["completed_success"] == 1  # cy joined Customers
    assert flows["deal_sequence"]["status"] == "stopped"
    assert report["outbox"]["pending"] == 0 and report["outbox"]["delivered"] == len(lines)
    assert summary["flows"]["newsletter_welcome"]["statuses"] == flows["newsletter_welcome"]["statuses"]

    # run again with the same project: nothing changes, nothing is delivered twice
    code, _, err = cli(capsys, "run", ROOT / "examples", "--db", db, "--deploy", "--actions", actions,
                       "--format", "json")
    assert code == 0, err
    again = summary_of(err)
    assert {d["change"] for d in again["deployed"]} == {"unchanged"}
    assert again["delivered"] == 0
    assert len(actions.read_text().splitlines()) == len(lines)


def test_actions_go_to_stdout_and_status_table(db, tmp_path, capsys):
    project = drip_project(tmp_path)
    code, out, err = cli(capsys, "run", project, "--db", db, "--deploy", "--start", "drip",
                         "--enroll", f"drip={people(tmp_path / 'people.jsonl', 3)}")
    assert code == 0, err
    sent = [json.loads(line) for line in out.splitlines()]
    assert [a["settings"]["subject"] for a in sent] == ["Hello P0", "Hello P1", "Hello P2"]
    assert "worker: 0 participant steps, 3 actions delivered; nothing left due" in err
    assert "drip (running): 3 active" in err

    code, out, _ = cli(capsys, "status", "--db", db)
    assert code == 0
    assert "drip" in out and "running" in out and "pause1" in out
    assert "outbox: 0 to send, 0 failed, 0 cancelled; 3 delivered" in out
    assert "dead letters: 0" in out
    report = status(capsys, db, "drip")
    (flow,) = report["flows"]
    assert flow["steps"] == {"pause1": {"active": 3}}
    assert flow["version"].startswith("sha256:")
    assert flow["outbox"] == {"pending": 0, "sending": 0, "failed": 0, "cancelled": 0}


def test_events_from_stdin_with_controls_and_dead_letters(db, tmp_path, capsys, monkeypatch):
    project = drip_project(tmp_path)
    code, _, err = cli(capsys, "run", project, "--db", db, "--deploy", "--start", "drip",
                       "--enroll", f"drip={people(tmp_path / 'people.jsonl', 2)}")
    assert code == 0, err
    stdin = "\n".join(json.dumps(e) for e in [
        {"at": "2026-03-02T10:00", "flow": "drip", "control": "pause"},
        {"participant": "p0", "type": "email.opened", "email": "Hello"},
        {"participant": "nobody", "type": "email.opened", "email": "Hello"},
        {"participant": "p1", "type": "no.such.event"},
    ]) + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, _, err = cli(capsys, "run", "--db", db, "--events", "-", "--format", "json")
    assert code == 0, err
    summary = summary_of(err)
    assert summary["events"]["outcome"] == {"control": 1, "applied": 1, "dead letter": 2}
    assert summary["controls"] == [{"flow": "drip", "control": "pause", "source": "<stdin>:1"}]
    assert summary["dead_letters"] == 2

    report = status(capsys, db, letters=True)
    assert report["flows"][0]["status"] == "paused"
    items = report["dead_letters"]["items"]
    assert report["dead_letters"]["count"] == 2 and len(items) == 2
    assert "no flow has this participant" in items[0]["reason"]
    assert "unknown event type" in items[1]["reason"]
    code, out, _ = cli(capsys, "status", "--db", db, "--dead-letters")
    assert code == 0 and "dead letters: 2" in out and "no.such.event" in out


def test_a_changed_running_flow_must_be_paused(db, tmp_path, capsys):
    project = drip_project(tmp_path)
    code, _, err = cli(capsys, "run", project, "--db", db, "--deploy", "--start", "drip",
                       "--enroll", f"drip={people(tmp_path / 'people.jsonl', 2)}")
    assert code == 0, err
    drip_project(tmp_path, DRIP_V2)

    code, _, err = cli(capsys, "run", project, "--db", db, "--deploy")
    assert code == 2
    assert err.count("\n") == 1
    assert "flow `drip` is running" in err and "must be paused first (add --pause drip" in err

    # paused in the same command, but two participants rest at the removed step
    code, _, err = cli(capsys, "run", project, "--db", db, "--pause", "drip", "--deploy",
                       "--resume", "drip")
    assert code == 2
    assert "rest at steps the new version removes: pause1" in err
    assert status(capsys, db)["flows"][0]["status"] == "running"  # the refused deploy paused nothing

    code, _, err = cli(capsys, "run", project, "--db", db, "--pause", "drip", "--deploy",
                       "--removed", "nosuchstep=", "--resume", "drip")
    assert code == 2 and "--removed nosuchstep" in err

    code, _, err = cli(capsys, "run", project, "--db", db, "--pause", "drip", "--deploy",
                       "--removed", "drip:pause1=", "--resume", "drip", "--format", "json")
    assert code == 0, err
    summary = summary_of(err)
    assert [d["change"] for d in summary["deployed"]] == ["updated"]
    assert [c["control"] for c in summary["controls"]] == ["pause", "resume"]
    report = status(capsys, db)
    assert report["flows"][0]["status"] == "running"
    assert report["flows"][0]["statuses"]["dropout"] == 2


def test_end_then_start_admits_only_new_people(db, tmp_path, capsys):
    project = drip_project(tmp_path)
    first = people(tmp_path / "first.jsonl", 3)
    code, _, err = cli(capsys, "run", project, "--db", db, "--deploy", "--start", "drip",
                       "--enroll", f"drip={first}")
    assert code == 0, err
    code, _, err = cli(capsys, "run", "--db", db, "--end", "drip", "--start", "drip",
                       "--enroll", f"drip={first}",
                       "--enroll", f"drip={people(tmp_path / 'new.jsonl', 2, offset=3)}",
                       "--format", "json")
    assert code == 0, err
    summary = summary_of(err)
    assert [e["outcome"] for e in summary["enrolled"]] == [{"refused": 3}, {"active": 2}]
    statuses = status(capsys, db)["flows"][0]["statuses"]
    assert statuses["dropout"] == 3 and statuses["active"] == 2


@pytest.mark.parametrize("argv, message", [
    (["run", "--db", "mysql://example/db"], "is not a store URL"),
    (["run", "--db", "sqlite:///{tmp}/no/such/folder/x.db"], "cannot open the database"),
    (["run", "--db", "sqlite:///{tmp}/x.db", "--start", "nosuch"], "no flow `nosuch` is deployed"),
    (["run", "{project}", "--db", "sqlite:///{tmp}/x.db", "--start", "drip"],
     "it is in the project: add --deploy"),
    (["run", "--db", "sqlite:///{tmp}/x.db", "--deploy"], "--deploy needs the project"),
    (["run", "{project}", "--db", "sqlite:///{tmp}/x.db", "--enroll", "drip={tmp}/bad.jsonl"],
     "bad.jsonl:2: not valid JSON"),
    (["run", "{project}", "--db", "sqlite:///{tmp}/x.db", "--enroll", "drip={tmp}/noid.jsonl"],
     'noid.jsonl:1: a person needs an "id"'),
    (["run", "--db", "sqlite:///{tmp}/x.db", "--events", "{tmp}/missing.jsonl"], "cannot read"),
    (["run", "--db", "sqlite:///{tmp}/x.db", "--actions", "{tmp}/no/such/dir/a.jsonl"],
     "cannot write"),
    (["status", "--db", "sqlite:///{tmp}/missing.db"], "no database at"),
    (["status", "--db", "sqlite:///{tmp}/junk.db"], "file is not a database"),
    (["status", "--db", "sqlite:///{tmp}/other.db"], "other.db is not a flowlang store"),
    (["run", "{project}", "--db", "sqlite:///{tmp}/x.db", "--removed", "a="], "add --deploy"),
    (["status", "--db", "postgresql://someone:secret@127.0.0.1:1/db"], "someone:***@"),
])
def test_usage_and_store_errors_are_one_line_exit_two(tmp_path, capsys, argv, message):
    project = drip_project(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"id": "a"}\n{oops\n')
    (tmp_path / "noid.jsonl").write_text('{"data": {}}\n')
    (tmp_path / "junk.db").write_text("not a database, not at all" * 100)
    with sqlite3.connect(tmp_path / "other.db") as other:
        other.execute("CREATE TABLE t (x)")
    argv = [a.format(tmp=tmp_path, project=project) for a in argv]
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("flowlang: ")
    assert "secret" not in err
    if "other.db" in message:
        with sqlite3.connect(tmp_path / "other.db") as other:  # status added nothing to it
            assert other.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]


def test_status_of_one_unknown_flow(sqlite_db, tmp_path, capsys):
    code, _, err = cli(capsys, "run", drip_project(tmp_path), "--db", sqlite_db, "--deploy")
    assert code == 0, err
    code, _, err = cli(capsys, "status", "--db", sqlite_db, "nosuch")
    assert code == 2 and "no flow `nosuch` is deployed (deployed: drip)" in err


def test_a_project_with_errors_is_refused_like_compile(sqlite_db, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "b.flow").write_text('flow broken {\n  wait three days\n  complete\n}\n')
    code, out, err = cli(capsys, "run", folder, "--db", sqlite_db, "--deploy")
    assert code == 1
    assert "error[FL100]" in err and "not compiled" in err
    assert not Path(sqlite_db.removeprefix("sqlite:///")).exists()  # refused before the store


# ---------------------------------------------------------------------- signals
def _wait_for_line(proc: subprocess.Popen, wanted: str, seconds: float = 120) -> list[str]:
    """Read the subprocess's stderr until a line holds `wanted` (bounded)."""
    seen: list[str] = []
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not selector.select(timeout=deadline - time.monotonic()):
            continue
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if wanted in line:
            return seen
    proc.kill()
    raise AssertionError(f"`{wanted}` never appeared:\n{''.join(seen)}")


def _wait_for_file(proc: subprocess.Popen, path: Path, seconds: float = 120) -> list[str]:
    """Wait (bounded) until the subprocess has written its first action line."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.stat().st_size:
            return []
        time.sleep(0.002)
    proc.kill()
    raise AssertionError(f"no action was written: {proc.stderr.read()}")


@pytest.mark.parametrize("signum, expected, moment", [
    (signal.SIGINT, 130, '"event": "enrolling"'),  # while people are enrolled, a chunk at a time
    (signal.SIGINT, 130, "first action"),  # while the worker delivers, a batch at a time
    (signal.SIGTERM, 0, "first action"),
    (signal.SIGINT, 130, '"event": "worker"'),  # between enrolling and delivering
], ids=["sigint-enrolling", "sigint-delivering", "sigterm-delivering", "sigint-starting-worker"])
def test_a_signal_stops_a_forever_worker_after_its_batch(db, tmp_path, capsys, signum, expected,
                                                         moment):
    project = drip_project(tmp_path)
    crowd = people(tmp_path / "crowd.jsonl", 5000)
    actions = tmp_path / "actions.jsonl"
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("FLOWLANG_CRASH_AT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowlang", "run", str(project), "--db", db, "--deploy",
         "--start", "drip", "--enroll", f"drip={crowd}", "--forever", "--batch", "100",
         "--poll", "0.2", "--actions", str(actions), "--format", "json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        if moment == "first action":
            before = _wait_for_file(proc, actions)
        else:
            before = _wait_for_line(proc, moment)
        proc.send_signal(signum)
        out, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(before) + rest
    assert proc.returncode == expected, err
    assert "Traceback" not in err
    summary = summary_of(err)
    assert summary["stopped"] == signal.Signals(signum).name
    (enrolled,) = summary["enrolled"]
    admitted = enrolled["outcome"].get("active", 0)
    assert 0 < enrolled["done"] <= 5000 and enrolled["done"] % 100 == 0  # whole chunks

    # the store is consistent: whole batches only
    report = status(capsys, db)
    (flow,) = report["flows"]
    assert flow["participants"] == admitted == enrolled["done"]
    assert flow["steps"] == {"pause1": {"active": admitted}}
    lines = actions.read_text().splitlines()
    keys = {json.loads(line)["key"] for line in lines}
    assert len(keys) == len(lines)  # no crash: no line twice
    assert report["outbox"]["delivered"] == len(lines) == summary["delivered"]
    assert len(lines) % 100 == 0  # whole delivery batches
    assert report["outbox"]["pending"] + report["outbox"]["delivered"] == admitted

    # and a later run picks up where it stopped
    code, _, err = cli(capsys, "run", "--db", db, "--actions", actions, "--format", "json")
    assert code == 0, err
    assert status(capsys, db)["outbox"]["delivered"] == admitted
    assert len(actions.read_text().splitlines()) == admitted


def test_a_terminal_gets_a_live_display(sqlite_db, tmp_path, capsys):
    """stderr on a terminal: a rich live display instead of JSON logs; the actions
    still go to stdout as JSON lines, untouched by the display."""
    import pty

    project = drip_project(tmp_path)
    controller, terminal = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowlang", "run", str(project), "--db", sqlite_db, "--deploy",
         "--start", "drip", "--enroll", f"drip={people(tmp_path / 'people.jsonl', 3)}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, env=env)
    os.close(terminal)
    screen = b""
    while True:  # until the process closes its end of the terminal
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(controller)
    text = screen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert '"event"' not in text  # no JSON logs on a terminal
    assert "deployed drip" in text and "delivered" in text
    assert "worker: 0 participant steps, 3 actions delivered; nothing left due" in text
    assert [json.loads(line)["participant"] for line in out.decode().splitlines()] == ["p0", "p1", "p2"]


@pytest.mark.parametrize("url, shown", [
    ("sqlite:///rel/x.db", "sqlite:///rel/x.db"),
    ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
    ("postgresql://me:s3cret@db.internal/flows", "postgresql://me:***@db.internal/flows"),
    ("postgresql://me@/flows?host=/run&password=s3cret", "postgresql://me@/flows?host=/run&password=***"),
])
def test_store_urls_are_printed_without_passwords(url, shown):
    from flowlang.cli_worker import describe_url

    assert describe_url(url) == shown


def test_retry_options_reach_the_engine(monkeypatch, tmp_path):
    """--max-attempts and --backoff configure the engine's retries."""
    from flowlang import cli_worker
    from flowlang.runtime import engine as engine_module

    made = {}
    real = engine_module.Engine

    class Recording(real):
        def __init__(self, *args, **kwargs):
            made.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(engine_module, "Engine", Recording)
    monkeypatch.setattr(cli_worker, "Engine", Recording, raising=False)
    from flowlang.cli import main
    code = main(["run", "--db", f"sqlite:///{tmp_path / 'r.db'}", "--max-attempts", "2",
                 "--backoff", "30"])
    assert code == 0
    assert made["max_attempts"] == 2 and made["backoff"].total_seconds() == 30
