"""The reference flow (`../shared/bench/reference.flow`) in the libraries a user
would otherwise pick (DESIGN §10): `transitions` (a state machine library) and
SpiffWorkflow (a BPMN engine; the BPMN XML is below).

Each peer has the interface of `baseline.Baseline`: `enroll_many(people)`,
`click(pid, link)`, `run_until(when)`, `statuses()`, and records every action as
the same small tuple (participant, step, action, time, rendered text) through
`emit` (texts rendered with f-strings). Neither
library has a virtual clock or a timer index of its own for many instances, so
each driver keeps a heapq of (wake time, sequence, participant) as the host
would. If a library is not installed, `available()` says why.

    transitions: one Machine, one model object per participant (`add_model`);
      callbacks `on_enter_<state>` do the actions, a driver loop fires `go` until
      the participant rests at a wait. (`add_model` tests `model not in
      machine.models`, a list, so enrolment is quadratic in N: about a third of
      the time at N=10,000; hence a small N for this peer.) The time-out is one
      more transition (to `dropout`) than flowlang's, which ends where it waits.
    SpiffWorkflow: one BpmnWorkflow per participant over one parsed spec; script
      tasks do the actions; `wait 3 days` is a timer catch event, `wait for
      clicked link offer within 7 days else exit` an event-based gateway between
      a message catch and a timer catch. SpiffWorkflow reads the wall clock
      (`datetime.now`) in its timer definitions: the driver points that module's
      `datetime` at a subclass whose `now()` is the virtual clock.
"""
from __future__ import annotations

import datetime as dt
from heapq import heappop, heappush

THREE_DAYS = dt.timedelta(days=3)
SEVEN_DAYS = dt.timedelta(days=7)


def available() -> dict[str, str | None]:
    """Peer name -> None if it can run here, else why not."""
    out: dict[str, str | None] = {}
    try:
        import transitions  # noqa: F401
        out["transitions"] = None
    except Exception as e:  # pragma: no cover - depends on the environment
        out["transitions"] = f"not installed ({type(e).__name__}: {e}); pip install transitions"
    try:
        import SpiffWorkflow.bpmn  # noqa: F401
        out["spiff"] = None
    except Exception as e:  # pragma: no cover
        out["spiff"] = f"not installed ({type(e).__name__}: {e}); pip install SpiffWorkflow"
    return out


def version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v
    try:
        return v({"transitions": "transitions", "spiff": "SpiffWorkflow"}[name])
    except PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------- transitions

STATES = ["new", "send_email", "wait_3_days", "split_score", "followup", "add_hot", "complete_hot",
          "send_sms", "wait_click", "update_person", "complete", "dropout"]
TRANSITIONS = [
    {"trigger": "enter", "source": "new", "dest": "send_email"},
    {"trigger": "go", "source": "send_email", "dest": "wait_3_days"},
    {"trigger": "timeout", "source": "wait_3_days", "dest": "split_score"},
    {"trigger": "go", "source": "split_score", "dest": "followup", "conditions": "is_hot"},
    {"trigger": "go", "source": "split_score", "dest": "send_sms"},
    {"trigger": "go", "source": "followup", "dest": "add_hot"},
    {"trigger": "go", "source": "add_hot", "dest": "complete_hot"},
    {"trigger": "go", "source": "send_sms", "dest": "wait_click"},
    {"trigger": "clicked", "source": "wait_click", "dest": "update_person", "conditions": "is_offer"},
    {"trigger": "timeout", "source": "wait_click", "dest": "dropout"},
    {"trigger": "go", "source": "update_person", "dest": "complete"},
]
RESTING = frozenset({"wait_3_days", "wait_click"})
FINAL = {"complete_hot": "completed", "complete": "completed", "dropout": "dropout"}


class _Lead:
    """A participant as a `transitions` model (it needs a __dict__: the machine
    binds its triggers and `is_<state>` checks onto every model)."""

    def __init__(self, host: "TransitionsFlow", pid: str, data: dict):
        self.host = host
        self.id = pid
        self.first_name = data.get("first_name")
        self.score = data.get("score")
        self.mobile = data.get("mobile")
        self.selections = ()
        self.wake_at = None

    # conditions
    def is_hot(self) -> bool:
        return self.score is not None and self.score >= 50

    def is_offer(self, link: str) -> bool:
        return link == "offer"

    # entry actions (bound by name: on_enter_<state>)
    def on_enter_send_email(self):
        self.host.emit((self.id, "send-email-welcome", "send email", self.host.now,
                        f"Welcome, {self.first_name}"))

    def on_enter_wait_3_days(self):
        self.host.schedule(self, self.host.now + THREE_DAYS)

    def on_enter_followup(self):
        self.host.emit((self.id, "followup", "create followup", self.host.now,
                        f"Call {self.first_name}"))

    def on_enter_add_hot(self):
        self.host.emit((self.id, "add-to-selection-hot", "add to selection", self.host.now, None))
        if "Hot" not in self.selections:
            self.selections = self.selections + ("Hot",)

    def on_enter_send_sms(self):
        if self.mobile:
            self.host.emit((self.id, "send-sms", "send sms", self.host.now,
                            f"Hi {self.first_name}, see our offer."))

    def on_enter_wait_click(self):
        self.host.schedule(self, self.host.now + SEVEN_DAYS)

    def on_enter_update_person(self, *_trigger_args):
        self.host.emit((self.id, "update-person", "update person", self.host.now, None))
        self.score = (self.score or 0) + 10


class TransitionsFlow:
    name = "transitions"

    def __init__(self, start: dt.datetime, emit=None):
        from transitions import Machine
        self.now = start
        self.machine = Machine(model=None, states=STATES, transitions=TRANSITIONS, initial="new",
                               auto_transitions=False)
        self.people: dict[str, _Lead] = {}
        self.timers: list = []
        self.seq = 0
        self.actions: list[tuple] = []
        self.emit = emit if emit is not None else self.actions.append

    def schedule(self, lead: _Lead, when: dt.datetime) -> None:
        lead.wake_at = when
        self.seq += 1
        heappush(self.timers, (when, self.seq, lead))

    @staticmethod
    def _advance(lead: _Lead) -> None:
        while lead.state not in RESTING and lead.state not in FINAL:
            lead.go()

    def enroll_many(self, people) -> None:
        add = self.machine.add_model
        for pid, data in people:
            lead = _Lead(self, pid, data)
            add(lead)
            self.people[pid] = lead
            lead.enter()
            self._advance(lead)

    def click(self, pid: str, link: str) -> bool:
        lead = self.people.get(pid)
        if lead is None or lead.state in FINAL:
            return False
        if lead.state == "wait_click" and lead.clicked(link):
            lead.wake_at = None
            self._advance(lead)
        return True

    def run_until(self, when: dt.datetime) -> None:
        timers = self.timers
        while timers and timers[0][0] <= when:
            wake, _, lead = heappop(timers)
            if lead.wake_at != wake or lead.state not in RESTING:
                continue
            self.now = wake
            lead.wake_at = None
            lead.timeout()
            self._advance(lead)
        if when > self.now:
            self.now = when

    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, status in self.participant_statuses():
            out[status] = out.get(status, 0) + 1
        return out

    def participant_statuses(self):
        return ((pid, FINAL.get(lead.state, "active")) for pid, lead in self.people.items())


# ---------------------------------------------------------------------- SpiffWorkflow

BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    id="reference_definitions" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:message id="offer_clicked" name="offer_clicked"/>
  <bpmn:process id="reference" name="Benchmark reference" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="send_email"/>
    <bpmn:scriptTask id="send_email" name="send email">
      <bpmn:script>record(pid, "send-email-welcome", "send email", f"Welcome, {first_name}")</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="send_email" targetRef="wait_3_days"/>
    <bpmn:intermediateCatchEvent id="wait_3_days" name="wait 3 days">
      <bpmn:timerEventDefinition>
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">"P3D"</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="wait_3_days" targetRef="split_score"/>
    <bpmn:exclusiveGateway id="split_score" name="Score" default="f_otherwise"/>
    <bpmn:sequenceFlow id="f_hot" name="Hot" sourceRef="split_score" targetRef="followup">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">score is not None and score &gt;= 50</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_otherwise" sourceRef="split_score" targetRef="send_sms"/>
    <bpmn:scriptTask id="followup" name="create followup">
      <bpmn:script>record(pid, "followup", "create followup", f"Call {first_name}")</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f4" sourceRef="followup" targetRef="add_hot"/>
    <bpmn:scriptTask id="add_hot" name="add to selection Hot">
      <bpmn:script>record(pid, "add-to-selection-hot", "add to selection", None)
if "Hot" not in selections: selections = selections + ["Hot"]</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f5" sourceRef="add_hot" targetRef="complete_hot"/>
    <bpmn:endEvent id="complete_hot"/>
    <bpmn:scriptTask id="send_sms" name="send sms">
      <bpmn:script>if mobile: record(pid, "send-sms", "send sms", f"Hi {first_name}, see our offer.")</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f6" sourceRef="send_sms" targetRef="wait_click"/>
    <bpmn:eventBasedGateway id="wait_click" name="wait for clicked link offer within 7 days"/>
    <bpmn:sequenceFlow id="f7" sourceRef="wait_click" targetRef="clicked"/>
    <bpmn:sequenceFlow id="f8" sourceRef="wait_click" targetRef="timed_out"/>
    <bpmn:intermediateCatchEvent id="clicked" name="clicked link offer">
      <bpmn:messageEventDefinition messageRef="offer_clicked"/>
    </bpmn:intermediateCatchEvent>
    <bpmn:intermediateCatchEvent id="timed_out" name="7 days">
      <bpmn:timerEventDefinition>
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">"P7D"</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f9" sourceRef="clicked" targetRef="update_person"/>
    <bpmn:scriptTask id="update_person" name="update person">
      <bpmn:script>record(pid, "update-person", "update person", None)
score = (score or 0) + 10</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f10" sourceRef="update_person" targetRef="complete"/>
    <bpmn:endEvent id="complete"/>
    <bpmn:sequenceFlow id="f11" sourceRef="timed_out" targetRef="dropout"/>
    <bpmn:endEvent id="dropout"/>
  </bpmn:process>
</bpmn:definitions>
"""
SPIFF_ENDS = {"complete_hot": "completed", "complete": "completed", "dropout": "dropout"}
_SPEC = None


class _Clock:
    """The virtual clock SpiffWorkflow's timers read. A timer fires only once
    `now` is strictly after its time, so while timers are refreshed the clock
    reads one microsecond later than the host's time."""
    now = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    skew = dt.timedelta(0)


def _virtual_time() -> None:
    import SpiffWorkflow.bpmn.specs.event_definitions.timer as timer

    if getattr(timer.datetime, "virtual", False):
        return

    class VirtualDatetime(dt.datetime):
        virtual = True

        @classmethod
        def now(cls, tz=None):
            return _Clock.now + _Clock.skew

    timer.datetime = VirtualDatetime


def _spec():
    global _SPEC
    if _SPEC is None:
        from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser
        parser = BpmnParser()
        parser.add_bpmn_str(BPMN.encode(), "reference.bpmn")
        _SPEC = parser.get_spec("reference")
    return _SPEC


class SpiffFlow:
    name = "spiff"

    def __init__(self, start: dt.datetime, emit=None):
        from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
        from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
        from SpiffWorkflow.bpmn.util import BpmnEvent
        from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
        from SpiffWorkflow.util.task import TaskState
        _virtual_time()
        self._Workflow = BpmnWorkflow
        self._Event = BpmnEvent
        self._Message = MessageEventDefinition
        self._State = TaskState
        self.spec = _spec()
        self.now = start
        _Clock.now = start
        _Clock.skew = dt.timedelta(0)
        self.people: dict = {}
        self.timers: list = []
        self.wake: dict[str, dt.datetime] = {}
        self.seq = 0
        self.actions: list[tuple] = []
        self.emit = emit if emit is not None else self.actions.append

        def record(pid, step, action, text):
            self.emit((pid, step, action, self.now, text))

        self.engine = PythonScriptEngine(environment=TaskDataEnvironment({"record": record}))

    def _set_now(self, when: dt.datetime) -> None:
        self.now = when
        _Clock.now = when

    def _schedule(self, pid: str, wf) -> None:
        """Index the workflow's next timer (its waiting tasks keep the time)."""
        self.wake.pop(pid, None)
        for task in wf.get_tasks(state=self._State.WAITING):
            value = task.internal_data.get("event_value")
            if isinstance(value, str):
                when = dt.datetime.fromisoformat(value)
                self.wake[pid] = when
                self.seq += 1
                heappush(self.timers, (when, self.seq, pid))
                return

    def enroll_many(self, people) -> None:
        for pid, data in people:
            wf = self._Workflow(self.spec, script_engine=self.engine)
            start = wf.get_tasks(state=self._State.READY)[0]
            start.set_data(pid=pid, selections=[], **data)
            wf.do_engine_steps()
            self.people[pid] = wf
            self._schedule(pid, wf)

    def click(self, pid: str, link: str) -> bool:
        wf = self.people.get(pid)
        if wf is None or wf.is_completed():
            return False
        if link == "offer":
            wf.catch(self._Event(self._Message("offer_clicked"), {"link": link}))
            wf.do_engine_steps()
            self._schedule(pid, wf)
        return True

    def run_until(self, when: dt.datetime) -> None:
        timers = self.timers
        while timers and timers[0][0] <= when:
            wake, _, pid = heappop(timers)
            if self.wake.get(pid) != wake:
                continue
            self._set_now(wake)
            wf = self.people[pid]
            _Clock.skew = dt.timedelta(microseconds=1)
            try:
                wf.refresh_timers()
            finally:
                _Clock.skew = dt.timedelta(0)
            wf.do_engine_steps()
            self._schedule(pid, wf)
        if when > self.now:
            self._set_now(when)

    def status(self, wf) -> str:
        if not wf.is_completed():
            return "active"
        for task in wf.get_tasks(state=self._State.COMPLETED):
            end = SPIFF_ENDS.get(task.task_spec.bpmn_id)
            if end is not None:
                return end
        return "completed"

    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, status in self.participant_statuses():
            out[status] = out.get(status, 0) + 1
        return out

    def participant_statuses(self):
        return ((pid, self.status(wf)) for pid, wf in self.people.items())


PEERS = {"transitions": TransitionsFlow, "spiff": SpiffFlow}
