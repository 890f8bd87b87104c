"""Evaluating IR expressions over a participant: a tree walk, never `eval`.

A field that is not set evaluates to None; comparisons with None are false (so
`person.score >= 50` is false for a person with no score), `is set` is the way to
ask. Behaviour conditions (`happened`) look at the participant's history since it
entered the flow.
"""
from __future__ import annotations

import datetime as dt
import operator
from typing import Any


def field(data: dict, path) -> Any:
    value: Any = data
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _const(node: dict) -> Any:
    value = node["const"]
    if node.get("type") == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def _comparable(a, b):
    """Dates may arrive as ISO strings in participant data."""
    if isinstance(a, dt.date) and isinstance(b, str):
        try:
            b = dt.date.fromisoformat(b[:10])
        except ValueError:
            return a, None
    if isinstance(b, dt.date) and isinstance(a, str):
        try:
            a = dt.date.fromisoformat(a[:10])
        except ValueError:
            return None, b
    return a, b


def _compare(op: str, a, b) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op in ("in", "not in"):
        if b is None:
            return op == "not in"
        try:
            inside = a in b
        except TypeError:
            inside = False
        return inside if op == "in" else not inside
    a, b = _comparable(a, b)
    if a is None or b is None:
        return False
    try:
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
    except TypeError:
        return False
    raise ValueError(f"unknown operator {op!r}")


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def matches(payload: dict, match: dict) -> bool:
    """Does an event's payload fit a pattern's slot values? A value matches a key
    equal to it, or one that holds it (a list, or a dict's keys: `set` of
    `data.changed`); a dotted key reaches into the payload (`set.lifecycle`)."""
    return compile_match(match)(payload)


def evaluate(node: dict, participant) -> Any:
    """The value of an IR expression for a participant (its `data`, `member_of`
    and `history` since entry)."""
    if "op" in node:
        op = node["op"]
        args = node["args"]
        if op == "and":
            return bool(evaluate(args[0], participant)) and bool(evaluate(args[1], participant))
        if op == "or":
            return bool(evaluate(args[0], participant)) or bool(evaluate(args[1], participant))
        if op == "not":
            return not evaluate(args[0], participant)
        if op == "is set":
            value = evaluate(args[0], participant)
            return value is not None and value != "" and value != []
        return _compare(op, evaluate(args[0], participant), evaluate(args[1], participant))
    if "field" in node:
        return field(participant.data, node["field"])
    if "const" in node:
        return _const(node)
    if "list" in node:
        return node["list"]
    if "member" in node:
        return node["name"] in participant.member_of(node["member"])
    if "happened" in node:
        kind, match = node["happened"], node["match"]
        return any(event_type == kind and matches(payload, match)
                   for event_type, payload in participant.history)
    raise ValueError(f"not an expression: {node!r}")


def compile_expression(node: dict):
    """The expression as a closure over a participant: the same meaning as
    `evaluate`, built once per expression instead of walked per participant."""
    if "op" in node:
        op = node["op"]
        args = [compile_expression(a) for a in node["args"]]
        if op == "and":
            a, b = args
            return lambda p: bool(a(p)) and bool(b(p))
        if op == "or":
            a, b = args
            return lambda p: bool(a(p)) or bool(b(p))
        if op == "not":
            (a,) = args
            return lambda p: not a(p)
        if op == "is set":
            (a,) = args

            def is_set(p):
                value = a(p)
                return value is not None and value != "" and value != []
            return is_set
        a, b = args
        order = _ORDER.get(op)
        if order is None:
            return lambda p: _compare(op, a(p), b(p))
        right = node["args"][1]
        if "const" in right and type(right["const"]) in (int, float) and right.get("type") != "date":
            # `score >= 50`, the commonest test: a number against a number needs
            # none of `ordered`'s checks
            y = right["const"]

            def against_number(p):
                x = a(p)
                if type(x) is int or type(x) is float:
                    return order(x, y)
                return ordered(p)
        else:
            against_number = None

        def ordered(p):
            # `_compare` for <, <=, >, >=, with its date handling only for dates
            x = a(p)
            y = b(p)
            if x is None or y is None:
                return False
            if isinstance(x, dt.date) or isinstance(y, dt.date):
                return _compare(op, x, y)
            try:
                return order(x, y)
            except TypeError:
                return False
        return against_number or ordered
    if "field" in node:
        path = tuple(node["field"])
        if len(path) == 1:
            name = path[0]
            return lambda p: p.data.get(name)
        return lambda p: field(p.data, path)
    if "const" in node:
        value = _const(node)
        return lambda p: value
    if "list" in node:
        items = node["list"]
        return lambda p: items
    if "member" in node:
        kind, name = node["member"], node["name"]
        return lambda p: name in p.member_of(kind)
    if "happened" in node:
        kind, match = node["happened"], node["match"]
        fits = compile_match(match)

        def happened(p):
            for event_type, payload in p.history:
                if event_type == kind and fits(payload):
                    return True
            return False
        return happened
    raise ValueError(f"not an expression: {node!r}")


def compile_match(match: dict):
    """`matches(payload, match)` as a function of the payload, dotted keys split
    once."""
    wants = tuple((key.split("."), wanted) for key, wanted in match.items())

    def fits(payload: dict) -> bool:
        for path, wanted in wants:
            value = field(payload, path)
            if value == wanted:
                continue
            if isinstance(value, (list, tuple, set, dict)) and wanted in value:
                continue
            return False
        return True
    return fits
