"""Pipelines (HubSpot lead pipelines): records move between stages.

Pure functions, like the flow interpreter. Semantics from the seed: automatic
moves only go forward; a manual move of a record to an earlier stage turns
automatic moves off for that record from then on; lifecycle changes that come
from a company sync (`"source": "company sync"`) create no leads; a record in a
final stage is completed.
"""
from __future__ import annotations

import datetime as dt

import attrs

from flowlang.runtime.expr import evaluate, matches
from flowlang.runtime.interpreter import Action, apply_event
from flowlang.runtime.state import Participant

COMPANY_SYNC = "company sync"


class PipelineProgram:
    def __init__(self, machine: dict):
        if machine.get("kind") != "pipeline":
            raise ValueError("not a pipeline")
        self.ir = machine
        self.name = machine["name"]
        self.version = machine["hash"]
        self.stages = {s["id"]: s for s in machine["stages"]}
        self.order = {s["id"]: i for i, s in enumerate(machine["stages"])}
        self.first = machine["stages"][0]["id"] if machine["stages"] else None


@attrs.frozen
class PipelineResult:
    record: Participant | None
    actions: tuple[Action, ...]
    #: leads the event's handlers asked to create: (stage, data)
    new_leads: tuple[tuple[str, dict], ...] = ()


def _emit(program: PipelineProgram, p: Participant, do: dict, step: str, now, out: list) -> None:
    visit = p.visits.get(step, 0) + 1
    p.visits = {**p.visits, step: visit}
    out.append(Action(f"{program.version[7:19]}:{p.id}:{step}:{visit}", program.name, p.id, step,
                      do["action"], do, now, p.data, program.ir["participant"], 0, now))


def _arrive(program: PipelineProgram, p: Participant, stage: str, now, out: list) -> None:
    p.step = stage
    p.arrived_at = now
    p.path = p.path + (stage,)
    for do in program.stages[stage]["on_enter"]:
        _emit(program, p, do, do["id"], now, out)
    if program.stages[stage]["final"]:
        p.status = "completed"


def create(program: PipelineProgram, record: Participant, now: dt.datetime,
           stage: str | None = None) -> PipelineResult:
    """A new record enters the pipeline at `stage` (default: the first)."""
    p = record.copy()
    p.status = "active"
    p.version = program.version
    p.entered_at = now
    out: list[Action] = []
    _arrive(program, p, stage if stage in program.stages else program.first, now, out)
    return PipelineResult(p, tuple(out))


def on_event(program: PipelineProgram, record: Participant | None, subject: Participant,
             event: dict, now: dt.datetime) -> PipelineResult:
    """An event for `subject` (a person or a lead): move the record if a rule says
    so, and run the pipeline's `on … where …` handlers."""
    out: list[Action] = []
    new_leads: list[tuple[str, dict]] = []
    p = record.copy() if record is not None else None
    if p is not None and p.status == "active":
        apply_event(p, event)
        if event["type"] == "stage.moved" and event.get("stage") in program.stages:
            target = event["stage"]
            if event.get("manual") and program.order[target] < program.order[p.step]:
                p.auto_moves = False
            _arrive(program, p, target, now, out)
        elif p.auto_moves:
            for move in program.ir["moves"]:
                if move["from"] != p.step:
                    continue
                if not any(e["type"] == event["type"] and matches(event, e["match"]) for e in move["on"]):
                    continue
                if program.order[move["to"]] > program.order[p.step]:
                    _arrive(program, p, move["to"], now, out)
                break
    if event.get("source") != COMPANY_SYNC:
        who = p if p is not None else subject.copy()
        if p is None:
            apply_event(who, event)
        for handler in program.ir["handlers"]:
            on = handler["on"]
            if on["type"] != event["type"] or not matches(event, on["match"]):
                continue
            if handler["where"] is not None and not evaluate(handler["where"], who):
                continue
            for do in handler["actions"]:
                _emit(program, who, do, do["id"], now, out)
                if any(e["verb"] == "creates" and e["kind"] == "lead" for e in do["effects"]):
                    new_leads.append((do["settings"].get("stage"), dict(who.data)))
    return PipelineResult(p, tuple(out), tuple(new_leads))
