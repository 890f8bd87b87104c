"""The IR: one JSON-serialisable state machine per flow and per pipeline.

The compiler writes it, the interpreter and the renderers read only it. It is
plain data (dicts, lists, strings, numbers), so that it can be stored, diffed and
sent anywhere; `docs/ir.schema.json` is its JSON Schema. Expressions are trees of
objects (`{"op": "and", "args": [...]}`), never code.
"""
from __future__ import annotations

import hashlib
import json
import re

FORMAT = "flowlang.ir/1"

#: State kinds where a participant rests (DESIGN §6): everything else is passed
#: through in the same step.
RESTING = frozenset({"wait", "wait_until", "wait_for", "manual"})


def canonical_json(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _is_span(value) -> bool:
    return isinstance(value, dict) and {"file", "line", "column"} <= value.keys()


def _without_spans(data):
    if isinstance(data, dict):
        return {k: _without_spans(v) for k, v in data.items() if not (k == "span" and _is_span(v))}
    if isinstance(data, list):
        return [_without_spans(v) for v in data]
    return data


def content_hash(machine: dict) -> str:
    """A hash of what the machine does: source positions and the hash itself left
    out, so that reformatting a file or moving a flow keeps its version."""
    body = {k: v for k, v in machine.items() if k != "hash"}
    digest = hashlib.sha256(canonical_json(_without_spans(body)).encode("utf-8"))
    return "sha256:" + digest.hexdigest()


def with_hash(machine: dict) -> dict:
    machine = dict(machine)
    machine["hash"] = content_hash(machine)
    return machine


_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str, limit: int = 40) -> str:
    """`Call {{ person.first_name }}` -> `call-person-first-name`."""
    out = _SLUG.sub("-", text.lower()).strip("-")
    if len(out) > limit:
        out = out[:limit].rsplit("-", 1)[0] or out[:limit]
    return out or "step"
