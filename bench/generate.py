"""Generate a large, varied and valid flowlang project for benchmarks (DESIGN §10).

The flows are built from the constructs of the conformance examples: settings,
triggers, success criteria, e-mails, SMS, waits of every kind, updates, CRM records,
nested splits (on conditions, on a field's value, random), labelled loops, exits
with hand-overs to other flows, pipelines, forms, links, a schema and comments.
Names, step counts, nesting and values vary; the output depends only on the seed.

The project is meant to check clean: names are unique, every `add to flow` points at
an earlier flow (no cycles), behaviour conditions only name e-mails sent earlier on
the same path, loops pass a wait, `wait until` dates only grow along a path, and no
step follows one that ends the path.

    python bench/generate.py OUT_DIR [--lines 20000] [--seed 1]
    from generate import generate; files = generate(lines=20_000, seed=1)  # {path: text}
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
from pathlib import Path

FIRST_NAMES = ["Anna Berg", "Bjorn Dahl", "Carl Eng", "Dina Falk", "Erik Gran", "Frida Holm"]
COUNTRIES = ["NO", "SE", "DK", "FI", "DE", "NL", "FR", "ES", "IT", "PL"]
TIMEZONES = ["Europe/Oslo", "Europe/Stockholm", "Europe/Copenhagen", "Europe/Berlin", "UTC"]
TOPICS = ["automation", "pricing", "onboarding", "webinars", "integrations", "security",
          "reporting", "mobile", "analytics", "support"]
SUBJECTS = ["Welcome, {{ person.first_name }}!", "A quick question about {{ person.company.name }}",
            "Your guide to {topic}", "{{ person.first_name }}, have you seen this?",
            "News about {topic}", "Last chance: {topic} for {{ person.company.name }}",
            "How teams use {topic}", "Still interested in {topic}?"]
SMS_TEXTS = ["Hi {{ person.first_name }}, thanks for reading!",
             "Reminder: {topic} starts soon.", "Hi {{ person.first_name }}, reply YES for a call.",
             "Your {topic} guide is ready."]
COMMENTS = ["# Keep this short: most readers skim.", "# Sales asked for this step.",
            "# A/B test, see the dashboard.", "# Give them time to read it.",
            "# Only the engaged ones get a call.", "# Hand over to the sales team here.",
            "# TODO: review the wording with marketing."]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
UNITS = ["minutes", "hours", "days", "workdays", "weeks"]


class Writer:
    """Lines with indentation."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = "") -> None:
        self.lines.append(("  " * self.depth + text) if text else "")

    def open(self, text: str) -> None:
        self.line(text + " {")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.line("}")


class Project:
    """Names and counters shared across files, so that every name is unique."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.flows: list[str] = []
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


class FlowWriter:
    """One flow: steps drawn at random, with the bookkeeping that keeps it valid."""

    def __init__(self, project: Project, w: Writer, name: str, forms: list[str],
                 links: list[str], entity: str):
        self.p, self.w, self.rng = project, w, project.rng
        self.name, self.forms, self.links, self.entity = name, forms, links, entity
        self.budget = 0
        self.date = dt.date(2026, 1, 5) + dt.timedelta(days=self.rng.randrange(300))
        self.labels: list[str] = []

    # ------------------------------------------------------------------ values
    def duration(self, big: bool = False) -> str:
        rng = self.rng
        if rng.random() < 0.15:
            return f"1 day {rng.randrange(1, 23)} hours"
        unit = rng.choice(UNITS[2:] if big else UNITS)
        amount = {"minutes": rng.choice([15, 30, 45, 90]), "hours": rng.randrange(1, 48),
                  "days": rng.randrange(1, 15), "workdays": rng.randrange(1, 10),
                  "weeks": rng.randrange(1, 5)}[unit]
        if amount == 1:
            unit = unit[:-1]
        return f"{amount} {unit}"

    def topic(self) -> str:
        return self.rng.choice(TOPICS)

    def subject(self) -> str:
        text = self.rng.choice(SUBJECTS).replace("{topic}", self.topic())
        return text.replace("{{ person.", "{{ " + self._person() + ".")

    # ------------------------------------------------------------------ steps
    def steps(self, count: int, sent: list[str], depth: int, last: bool) -> bool:
        """Write up to `count` steps; returns True when the path has ended."""
        w, rng = self.w, self.rng
        for i in range(count):
            final = i == count - 1
            if rng.random() < 0.08:
                w.line(rng.choice(COMMENTS))
            kind = rng.choices(
                ["email", "wait", "wait_until", "wait_for", "sms", "update", "selection",
                 "record", "notify", "split", "loop", "script"],
                [14, 12, 3, 6, 4, 5, 6, 6, 3, 8 if depth < 3 else 0,
                 2 if depth == 0 and not final else 0, 2])[0]
            if self.entity != "person" and kind in ("sms", "update", "selection", "record", "script",
                                                     "loop"):
                kind = "deal_step"
            ended = getattr(self, "step_" + kind)(sent, depth, final and last)
            if ended:
                return True
        return False

    def step_email(self, sent, depth, final) -> bool:
        w, rng = self.w, self.rng
        name = self.p.fresh("Mail ")
        sent.append(name)
        if rng.random() < 0.6:
            w.line(f'send email "{name}" {{ subject "{self.subject()}" }}')
            return False
        w.open(f'send email "{name}"')
        w.line(f'subject "{self.subject()}"')
        r = rng.random()
        if r < 0.4:
            w.line(f'body "Hello {{{{ {self._person()}.first_name }}}}, here is our note on {self.topic()}."')
        elif r < 0.7:
            w.line('body """')
            w.depth += 1
            w.line(f"Dear {{{{ {self._person()}.first_name }}}},")
            w.line(f"a few words about {self.topic()} and what it does for")
            w.line(f"{{{{ {self._person()}.company.name }}}}.")
            w.line('"""')
            w.depth -= 1
        if rng.random() < 0.3:
            w.line(f'attach "{self.topic()}.pdf" {rng.randrange(1, 9)} MB')
        w.close()
        return False

    def step_wait(self, sent, depth, final) -> bool:
        self.w.line(f"wait {self.duration(big=self.rng.random() < 0.7)}")
        return False

    def step_wait_until(self, sent, depth, final) -> bool:
        self.date += dt.timedelta(days=self.rng.randrange(1, 20))
        time = f" {self.rng.randrange(7, 18):02d}:{self.rng.choice(['00', '15', '30', '45'])}" \
            if self.rng.random() < 0.6 else ""
        self.w.line(f"wait until {self.date.isoformat()}{time}")
        return False

    def behaviour(self, sent: list[str]) -> str:
        rng = self.rng
        options = []
        if sent:
            options += [f'opened email "{rng.choice(sent)}"', f'clicked email "{rng.choice(sent)}"']
            if self.entity != "person":
                options.append(f'replied email "{rng.choice(sent)}"')
        if self.links and self.entity == "person":
            options.append(f"clicked link {rng.choice(self.links)}")
        if self.forms and self.entity == "person":
            options.append(f"submitted form {rng.choice(self.forms)}")
        return rng.choice(options) if options else ""

    def step_wait_for(self, sent, depth, final) -> bool:
        condition = self.behaviour(sent)
        if not condition:
            return self.step_wait(sent, depth, final)
        within = f" within {self.duration(big=True)}" if self.rng.random() < 0.8 else ""
        tail = self.rng.choice(["", " else continue", " else exit", " else exit {}"])
        if tail == " else exit {}":
            if self.p.flows and self.entity == "person":
                self.w.line(f"wait for {condition}{within} else exit {{ add to flow "
                            f"{self.rng.choice(self.p.flows)} }}")
                return False
            tail = " else exit"
        self.w.line(f"wait for {condition}{within}{tail}")
        return False

    def step_sms(self, sent, depth, final) -> bool:
        w, rng = self.w, self.rng
        text = rng.choice(SMS_TEXTS).replace("{topic}", self.topic()) + f" {self.p.fresh('#')}"
        if rng.random() < 0.5:
            w.line(f'send sms {{ text "{text}" ; no mobile skip }}')
        else:
            w.open("send sms")
            w.line(f'text "{text}"')
            if self.p.flows and rng.random() < 0.5:
                w.line(f"no mobile exit {{ add to flow {rng.choice(self.p.flows)} }}")
            w.close()
        return False

    def step_update(self, sent, depth, final) -> bool:
        w, rng = self.w, self.rng
        w.open("update person")
        ops = rng.sample([f'set lead_status = "{rng.choice(["Engaged", "Warm", "Hot", "Cold"])} '
                          f'{self.p.fresh("#")}"',
                          f"increase score by {rng.randrange(1, 30)}",
                          f'add "{self.topic()} {self.p.fresh("#")}" to topics',
                          f"set renewal_date = 2027-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
                          f'set language = "{self.p.fresh("lang-")}"'],
                         rng.randrange(1, 4))
        for op in ops:
            w.line(op)
        w.close()
        w.line(f"wait {self.duration(big=True)}")  # no two updates of a field without a wait
        return False

    def step_selection(self, sent, depth, final) -> bool:
        what = self.rng.choice(["selection", "selection", "project", "interest"])
        verb = "add interest" if what == "interest" else f"add to {what}"
        self.w.line(f'{verb} "{self.p.fresh(what.capitalize() + " ")}"')
        return False

    def step_record(self, sent, depth, final) -> bool:
        w, rng = self.w, self.rng
        kind = rng.choice(["followup", "request", "sale", "distribute"])
        if kind == "followup":
            w.open(f'create followup "Call {{{{ person.first_name }}}} ({self.p.fresh("#")})"')
            w.line(f'type "{rng.choice(["Phone call", "Meeting", "Demo"])}"')
            w.line(rng.choice([f"date task in {self.duration(big=True)}", "date meeting first available",
                               f"date meeting first available after {self.duration(big=True)}"]))
            w.line(rng.choice(["assign our_contact", "assign our_service_contact",
                               f'assign "{rng.choice(FIRST_NAMES)}"']))
            if rng.random() < 0.4:
                w.line(f'agenda "Talk about {self.topic()} with {{{{ person.first_name }}}}."')
        elif kind == "request":
            w.open(f'create request "Help {{{{ person.company.name }}}} ({self.p.fresh("#")})"')
            w.line(f'type "{rng.choice(["Onboarding", "Support", "Billing"])}"')
            w.line(f'status "{rng.choice(["Open", "New"])}"')
            w.line(f'priority "{rng.choice(["Low", "Medium", "High"])}"')
            w.line(rng.choice(["owner auto", "owner unassigned", "owner our_contact"]))
            w.line(f'message "Please look at {self.topic()}."')
        elif kind == "sale":
            w.open(f'create sale "Inbound: {{{{ person.company.name }}}} ({self.p.fresh("#")})"')
            w.line(f'type "{rng.choice(["New business", "Upsell", "Renewal"])}"')
            w.line(f'stage "{rng.choice(["Lead", "Qualified", "Proposal"])}"')
            w.line(f"amount {rng.randrange(5, 500) * 100}")
            w.line(rng.choice([f"date in {rng.randrange(7, 90)} days", "date estimated"]))
            w.line("owner our_contact")
        else:
            w.open("distribute to owner")
            names = rng.sample(FIRST_NAMES, rng.randrange(1, 4)) + [f"Agent {self.p.fresh('')}"]
            w.line("among [" + ", ".join(f'"{n}"' for n in names) + "]")
            if rng.random() < 0.5:
                w.line("only if unassigned")
            w.line(f'fallback "{rng.choice(FIRST_NAMES)}"')
        w.close()
        return False

    def step_notify(self, sent, depth, final) -> bool:
        w, rng = self.w, self.rng
        if rng.random() < 0.6:
            w.open("notify email")
            w.line(rng.choice(["to our_contact", "to our_service_contact", 'to "sales@acme.example"']))
            w.line(f'subject "Lead update {self.p.fresh("#")}: {{{{ {self._person()}.first_name }}}}"')
            w.line(f'text "Please follow up on {self.topic()}."')
        else:
            w.open("notify sms")
            w.line(rng.choice(["to our_contact", "to our_service_contact"]))
            w.line(f'text "New lead {self.p.fresh("#")}: {{{{ {self._person()}.full_name }}}}"')
        w.close()
        return False

    def _person(self) -> str:
        return "person" if self.entity == "person" else f"{self.entity}.person"

    def step_script(self, sent, depth, final) -> bool:
        script = self.rng.choice(["sync-to-erp", "score-refresh", "tag-lead"])
        self.w.line(f'run script "{script}-{self.p.fresh("")}"')
        return False

    def step_deal_step(self, sent, depth, final) -> bool:
        w, rng = self.w, self.rng
        if rng.random() < 0.5:
            name = self.p.fresh("Draft ")
            sent.append(name)
            w.open(f'draft email "{name}"')
            w.line('from "anna@acme.example"')
            w.line(f'subject "About {{{{ {self.entity}.person.first_name }}}} and {self.topic()}"')
            if rng.random() < 0.5:
                w.line(f"remind in {self.duration(big=True)}")
        else:
            w.open(f'create activity "{rng.choice(["Call", "Meeting", "Demo"])} {self.p.fresh("#")}"')
            w.line(f"type {rng.choice(['call', 'meeting', 'task', 'lunch'])}")
            w.line(f"due in {rng.randrange(1, 6)} workdays")
            w.line("assign owner")
            if rng.random() < 0.5:
                w.line(f"priority {rng.choice(['low', 'normal', 'high'])}")
            if rng.random() < 0.4:
                w.line(f'note "Ask about {self.topic()}."')
        w.close()
        return False

    def step_loop(self, sent, depth, final) -> bool:
        """`label: wait …`, a few steps, then a split whose branch loops back."""
        w = self.w
        label = self.p.fresh("again_")
        w.line(f"{label}: wait {self.duration(big=True)}")
        self.steps(self.rng.randrange(1, 3), sent, depth + 1, last=False)
        condition = self.behaviour(sent) or "person.score < 50"
        w.open(f'split "{self.p.fresh("Loop ")}"')
        w.open(f'branch "Not yet" when not {condition}' if " " in condition else
               f'branch "Not yet" when {condition}')
        w.line(f"goto {label}")
        w.close()
        w.close()
        return False

    def step_split(self, sent, depth, final) -> bool:
        w, rng = self.w, self.rng
        kind = rng.choice(["when", "when", "value", "random"])
        title = f' "{self.p.fresh("Split ")}"' if rng.random() < 0.8 else ""
        ended_all = True
        if kind == "random":
            n = rng.randrange(2, 5)
            weights = [100 // n] * n
            weights[0] += 100 - sum(weights)
            w.open(f"split{title} random")
            for i, weight in enumerate(weights):
                w.open(f'branch "{chr(65 + i)}" {weight}%')
                ended_all &= self.branch_body(list(sent), depth, final)
                w.close()
        elif kind == "value" and self.entity == "person":
            w.open(f"split{title} on person.country")
            values = rng.sample(COUNTRIES, rng.randrange(2, 6))
            groups = []
            while values:
                take = rng.randrange(1, 3)
                groups.append(values[:take])
                values = values[take:]
            for group in groups:
                w.open(", ".join(f'"{v}"' for v in group))
                ended_all &= self.branch_body(list(sent), depth, final)
                w.close()
            ended_all = self.otherwise(sent, depth, final) and ended_all
        else:
            w.open(f"split{title}")
            conditions = self.conditions(sent)
            for i, condition in enumerate(conditions):
                w.open(f'branch "{self.p.fresh("B")}" when {condition}')
                ended_all &= self.branch_body(list(sent), depth, final)
                w.close()
            ended_all = self.otherwise(sent, depth, final) and ended_all
        w.close()
        return ended_all

    def conditions(self, sent: list[str]) -> list[str]:
        rng = self.rng
        out = []
        if self.entity == "person":
            thresholds = sorted(rng.sample(range(10, 100, 10), rng.randrange(1, 3)), reverse=True)
            out += [f"person.score >= {t}" for t in thresholds]
            if rng.random() < 0.3:
                out.append(f'person in selection "{rng.choice(["Customers", "Partners", "VIP"])}"')
            if rng.random() < 0.2:
                out.append(f'person.country in ["{rng.choice(COUNTRIES)}", "{rng.choice(COUNTRIES)}"]'
                           " and person.consent_email")
        else:
            out.append(f"{self.entity}.value >= {rng.randrange(1, 50) * 1000}" if self.entity == "deal"
                       else f'{self.entity}.stage == "new"')
        seen = set()
        for _ in range(2):
            behaviour = self.behaviour(sent)
            if behaviour and behaviour not in seen:
                seen.add(behaviour)
                out.insert(rng.randrange(len(out) + 1), behaviour)
        return out

    def otherwise(self, sent, depth, final) -> bool:
        """Write an `otherwise` (or none); True if it ends every path through it."""
        w, rng = self.w, self.rng
        r = rng.random()
        if r < 0.3:
            return False  # no otherwise: the participant goes on after the split
        if r < 0.45 and final:
            if self.p.flows and self.entity == "person" and rng.random() < 0.6:
                w.open("otherwise exit")
                w.line(f"add to flow {rng.choice(self.p.flows)}")
                w.line(f'add to selection "{self.p.fresh("Cold ")}"')
                w.close()
            else:
                w.line("otherwise exit")
            return True
        w.open("otherwise")
        ended = self.branch_body(list(sent), depth, final)
        w.close()
        return ended

    def branch_body(self, sent, depth, final) -> bool:
        ended = self.steps(self.rng.randrange(1, 5), sent, depth + 1, last=final)
        if not ended and final and self.rng.random() < 0.4:
            self.w.line("complete")
            return True
        return ended


def write_flow(project: Project, w: Writer, forms: list[str], links: list[str]) -> str:
    rng = project.rng
    name = project.fresh("flow_")
    entity = "deal" if rng.random() < 0.12 else "person"
    w.open(f'flow {name} "{rng.choice(["Welcome", "Nurture", "Renewal", "Webinar", "Re-engage"])} '
           f'{name.split("_")[1]}"')
    if entity != "person" or rng.random() < 0.3:
        w.line(f"for {entity}")
    w.open("settings")
    w.line('email from "news@acme.example"')
    w.line(f'email reply_to "{rng.choice(["support", "sales", "news"])}@acme.example"')
    if entity == "person":
        w.line('sms from "ACME"')
    if rng.random() < 0.7:
        w.line(f'timezone "{rng.choice(TIMEZONES)}"')
    if rng.random() < 0.4:
        w.line("workdays " + " ".join(DAYS[:rng.choice([5, 5, 6])]))
    if rng.random() < 0.3:
        w.line(f'holidays "{rng.choice(["NO", "SE", "DK"])}"')
    w.close()
    if entity == "person" and rng.random() < 0.85:
        w.open("trigger")
        w.line(rng.choice([f"on form {rng.choice(forms)} submitted" if forms else "on email opened",
                           f'on added to selection "{rng.choice(["Inbound", "Webinar", "Trial"])}"',
                           "on person.renewal_date changed",
                           f"on link {rng.choice(links)} clicked" if links else "on email clicked"]))
        if rng.random() < 0.5:
            w.line("once per person")
        if rng.random() < 0.6:
            w.line(rng.choice(['filter person.country == "NO" and person.consent_email',
                               f"filter person.score >= {rng.randrange(0, 60)}",
                               'filter person.score >= 20 and not person in selection "Churned"']))
        if rng.random() < 0.5:
            w.line('exclude selection "Do not contact"')
        w.close()
    if entity == "person" and rng.random() < 0.4:
        w.line(f'success when person in selection "{rng.choice(["Customers", "Trial users"])}"')
    w.line()
    flow = FlowWriter(project, w, name, forms, links, entity)
    ended = flow.steps(rng.randrange(4, 22), [], 0, last=True)
    if not ended:
        if project.flows and entity == "person" and rng.random() < 0.5:
            w.open("complete")
            w.line(f"success add to flow {rng.choice(project.flows)}")
            w.line(f"no success add to flow {rng.choice(project.flows)}")
            w.close()
        else:
            w.line("complete")
    w.close()
    project.flows.append(name)
    return name


def write_form(project: Project, w: Writer) -> str:
    name = project.fresh("form_")
    w.open(f'form {name} "Signup {name.split("_")[1]}"')
    w.open("on submit")
    w.line(f'add to selection "{project.fresh("Signups ")}"')
    if project.rng.random() < 0.5:
        w.line(f'add interest "{project.rng.choice(TOPICS)}"')
    w.close()
    w.close()
    return name


def write_link(project: Project, w: Writer) -> str:
    name = project.fresh("link_")
    w.open(f'link {name} "https://acme.example/{project.rng.choice(TOPICS)}/{name}"')
    w.open("on click")
    w.line(f'add interest "{project.fresh("Interest ")}"')
    w.close()
    w.close()
    return name


def write_pipeline(project: Project, w: Writer) -> None:
    rng = project.rng
    name = project.fresh("pipeline_")
    stages = ["new", "attempting", "connected", "qualified", "won"][:rng.randrange(3, 6)]
    w.open(f'pipeline {name} "Lead pipeline {name.split("_")[1]}"')
    w.line("for lead")
    w.line()
    for i, stage in enumerate(stages):
        final = i == len(stages) - 1
        if final:
            w.line(f'stage {stage} "{stage.capitalize()}" {{ final }}')
        elif rng.random() < 0.4:
            w.open(f'stage {stage} "{stage.capitalize()}"')
            w.open("on enter")
            w.open(f'create task "Reach out to {{{{ lead.name }}}} ({project.fresh("#")})"')
            days = rng.randrange(1, 4)
            w.line(f"due in {days} workday{'s' if days > 1 else ''}")
            w.line("assign owner")
            w.close()
            w.close()
            w.close()
        else:
            w.line(f'stage {stage} "{stage.capitalize()}"')
    w.line('stage lost "Disqualified" { final }')
    w.line()
    events = ["email sent", "linkedin message sent", "call logged", "meeting booked",
              "email replied", "meeting completed", 'call logged outcome "Connected"']
    for a, b in zip(stages, stages[1:]):
        w.line(f"move {a} to {b} on " + ", ".join(rng.sample(events, rng.randrange(1, 4))))
    w.line()
    w.open(f'on contact lifecycle becomes "{rng.choice(["Sales qualified lead", "Lead"])}"')
    w.line(f"create lead {{ stage {stages[0]} }}")
    w.close()
    if rng.random() < 0.5:
        w.open('on lead disqualified where lead.disqualification_reason in ["Timing", "No budget"]')
        w.open('create lead "Follow-up: {{ lead.name }}"')
        w.line('type "Follow-up"')
        w.line(f"stage {stages[0]}")
        w.close()
        w.close()
    w.close()


SCHEMA = """\
schema person {
  field lead_status text
  field consent_email bool
  field topics list of text
  field renewal_date date
}
"""


def generate(lines: int = 20_000, seed: int = 1, lines_per_file: int = 600) -> dict[str, str]:
    """{relative path: text} of a project of at least `lines` lines."""
    project = Project(random.Random(seed))
    rng = project.rng
    files: dict[str, str] = {}
    total = 0
    index = 0
    while total < lines:
        w = Writer()
        w.line(f"# Generated benchmark file {index} (seed {seed}).")
        w.line()
        if index == 0:
            w.lines.extend(SCHEMA.rstrip("\n").split("\n"))
            w.line()
        forms = [write_form(project, w) for _ in range(rng.randrange(1, 3))]
        w.line()
        links = [write_link(project, w) for _ in range(rng.randrange(1, 3))]
        w.line()
        if rng.random() < 0.35:
            write_pipeline(project, w)
            w.line()
        while len(w.lines) < lines_per_file and total + len(w.lines) < lines + 40:
            write_flow(project, w, forms, links)
            w.line()
        text = "\n".join(w.lines).rstrip("\n") + "\n"
        files[f"gen_{index:03d}.flow"] = text
        total += text.count("\n")
        index += 1
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the .flow files into")
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    files = generate(args.lines, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        (args.out / path).write_text(text, encoding="utf-8")
    lines = sum(t.count("\n") for t in files.values())
    print(f"wrote {len(files)} files, {lines} lines, to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
