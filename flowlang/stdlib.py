"""Declarations as data: the stdlib's (and a project's own) actions, events and
schemas, read from flowlang's declaration syntax into a registry.

The checker, compiler and runtime ask the registry; none of them lists actions.
A malformed declaration line is reported as FL202 (unknown declaration key) or
FL302 (bad value) at that line, like any other setting.
"""
from __future__ import annotations

import functools
from typing import Iterable

import attrs

from flowlang import nodes as n
from flowlang.diagnostics import Diagnostic, Related
from flowlang.literals import Size
from flowlang.patterns import Pattern, parse_pattern
from flowlang.resources import stdlib_dir
from flowlang.source import SourceFile
from flowlang.syntax import parse

PARTICIPANT_TYPES = ("person", "company", "deal", "lead")

#: Text fields without a declared maximum count as this many characters (FL601).
DEFAULT_TEXT_MAX = 20


@attrs.frozen
class Need:
    """A value a step needs, from its own settings or from the flow's (FL304)."""

    what: str
    alternatives: tuple[tuple[str, str], ...]  # ("setting", "from") | ("flow", "email from")


@attrs.frozen
class SettingDecl:
    name: tuple[str, ...]
    alternatives: tuple[Pattern, ...]  # empty: a flag
    required: bool = False
    repeated: bool = False
    default: str | None = None
    max_total: Size | None = None
    block: bool = False
    span: object = attrs.field(default=None, eq=False, repr=False)

    @property
    def text(self) -> str:
        return " ".join(self.name)

    @property
    def is_flag(self) -> bool:
        return not self.alternatives

    def describe(self) -> str:
        if self.is_flag:
            return f"`{self.text}` (takes no value)"
        forms = [f"`{self.text} {p.describe()}`" for p in self.alternatives]
        return forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]


@attrs.frozen
class Effect:
    """What an action does to the participant's data: `adds selection`, `sends
    email`, `sets field`. The target comes from the phrase's first slot, or from a
    named setting."""

    verb: str
    kind: str
    setting: str | None = None


@attrs.frozen
class ActionDecl:
    pattern: Pattern
    participants: tuple[str, ...] = PARTICIPANT_TYPES
    settings: tuple[SettingDecl, ...] = ()
    needs: tuple[Need, ...] = ()
    authorization_flag: str | None = None
    manual: bool = False
    produces: tuple[str, ...] = ()
    effects: tuple[Effect, ...] = ()
    operations_on: str | None = None  # `body operations person`
    #: (field, setting): without the field, the setting says skip or exit
    when_missing: tuple[str, str] | None = None
    scope: str = "step"
    delivery: str = "at least once"
    span: object = attrs.field(default=None, eq=False, repr=False)

    @property
    def phrase(self) -> str:
        return " ".join(self.pattern.words)

    def setting(self, name: str) -> SettingDecl | None:
        return next((s for s in self.settings if s.text == name), None)


@attrs.frozen
class EventDecl:
    pattern: Pattern
    type: str
    participants: tuple[str, ...] = PARTICIPANT_TYPES
    payload: tuple[str, ...] = ()
    condition: Pattern | None = None
    requires: tuple[str, str] | None = None  # ("sends", "email")
    scope: str = "trigger"
    updates: tuple[tuple[str, str], ...] = ()  # (field, payload key)
    needs: tuple[str, ...] = ()  # payload keys an event of this type must carry
    span: object = attrs.field(default=None, eq=False, repr=False)

    @property
    def phrase(self) -> str:
        return self.pattern.describe()


@attrs.frozen
class FieldType:
    words: tuple[str, ...]
    max_length: int | None = None
    span: object = attrs.field(default=None, eq=False, repr=False)

    @property
    def name(self) -> str:
        return " ".join(self.words)

    @property
    def is_text(self) -> bool:
        return self.words == ("text",)

    @property
    def is_list(self) -> bool:
        return self.words[:1] == ("list",)

    @property
    def entity(self) -> str | None:
        return self.words[0] if len(self.words) == 1 and self.words[0] in PARTICIPANT_TYPES else None


SCALAR_TYPES = {("text",), ("number",), ("bool",), ("date",), ("datetime",), ("user",),
                ("list", "of", "text"), ("list", "of", "number")}


@attrs.define
class Registry:
    actions: list[ActionDecl] = attrs.field(factory=list)
    events: list[EventDecl] = attrs.field(factory=list)
    schemas: dict[str, dict[str, FieldType]] = attrs.field(factory=dict)

    def copy(self) -> Registry:
        return Registry(list(self.actions), list(self.events),
                        {k: dict(v) for k, v in self.schemas.items()})

    def steps(self) -> list[ActionDecl]:
        return [a for a in self.actions if a.scope == "step"]

    def scoped(self, scope: str) -> ActionDecl | None:
        return next((a for a in self.actions if a.scope == scope), None)

    def events_in(self, scope: str) -> list[EventDecl]:
        return [e for e in self.events if e.scope == scope]

    def conditions(self) -> list[EventDecl]:
        return [e for e in self.events if e.condition is not None]

    def field(self, entity: str, name: str) -> FieldType | None:
        return self.schemas.get(entity, {}).get(name)


class _Reader:
    """Reads declaration bodies into registry entries, collecting diagnostics."""

    def __init__(self, registry: Registry, diagnostics: list[Diagnostic]):
        self.registry = registry
        self.diagnostics = diagnostics

    def error(self, code: str, node: n.Node, message: str, help: str | None = None) -> None:
        self.diagnostics.append(Diagnostic.at(code, node.span, message, help=help))

    # ------------------------------------------------------------------ schemas
    def schema(self, decl: n.Schema) -> None:
        entity = decl.entity.text
        fields = self.registry.schemas.setdefault(entity, {})
        for field in decl.fields:
            words = field.type_words
            if words not in SCALAR_TYPES and not (len(words) == 1 and words[0] in PARTICIPANT_TYPES):
                self.error("FL302", field, f"unknown field type `{' '.join(words)}`",
                           "types are text, number, bool, date, datetime, user, list of text, "
                           "or an entity: person, company, deal, lead")
                continue
            max_length = int(field.max_length.value) if field.max_length is not None else None
            new = FieldType(words, max_length, span=field.span)
            old = fields.get(field.name.text)
            if old is not None and old.words != new.words:
                related = (Related.at(old.span, "declared here"),) if old.span else ()
                self.diagnostics.append(Diagnostic.at(
                    "FL302", field.span,
                    f"`{entity}.{field.name.text}` is already a {old.name} field, not {new.name}",
                    related=related, help=f"declare it as `{old.name}` or use another name"))
                continue
            if old is not None and new.max_length is None:
                new = old
            fields[field.name.text] = new

    # ------------------------------------------------------------------ actions
    def action(self, decl: n.ActionDecl) -> ActionDecl | None:
        if not isinstance(decl.phrase, n.Str):
            return None
        pattern = parse_pattern(decl.phrase.value)
        if not pattern.words:
            self.error("FL302", decl.phrase, "an action's phrase must start with a word")
            return None
        fields: dict = {"pattern": pattern, "span": decl.span}
        settings: list[SettingDecl] = []
        needs: list[Need] = []
        effects: list[Effect] = []
        for line in decl.body.statements:
            if not isinstance(line, n.Command):
                self.error("FL202", line, "an action declaration holds declaration lines only")
                continue
            key, rest = line.words[0], line.parts[1:]
            handler = _ACTION_KEYS.get(key)
            if handler is None:
                self.error("FL202", line.parts[0], f"unknown action declaration line `{key}`",
                           "lines are: for, setting, needs, when, manual, produces, effect, "
                           "body, scope, delivery")
                continue
            handler(self, line, rest, fields, settings, needs, effects)
        fields["settings"] = tuple(settings)
        fields["needs"] = tuple(needs)
        fields["effects"] = tuple(effects)
        action = ActionDecl(**fields)
        self.registry.actions.append(action)
        return action

    def _participants(self, line, rest) -> tuple[str, ...] | None:
        words = tuple(p.text for p in rest if isinstance(p, n.Word))
        bad = [w for w in words if w not in PARTICIPANT_TYPES] or len(words) != len(rest)
        if bad or not words:
            self.error("FL302", line, "`for` lists participant types: person, company, deal, lead")
            return None
        return words

    def _setting(self, line: n.Command, rest) -> SettingDecl | None:
        if not rest or not isinstance(rest[0], (n.Word, n.Str)):
            self.error("FL302", line, "`setting` needs a name: `setting subject \"{template}\"`")
            return None
        name = tuple((rest[0].text if isinstance(rest[0], n.Word) else rest[0].value).split())
        spec, options = (rest[1] if len(rest) > 1 else None), list(rest[2:])
        if isinstance(spec, n.Str):
            alternatives = (parse_pattern(spec.value),)
        elif isinstance(spec, n.ListLit) and all(isinstance(i, n.Str) for i in spec.items):
            alternatives = tuple(parse_pattern(i.value) for i in spec.items)
        elif isinstance(spec, n.Word) and spec.text == "flag":
            alternatives = ()
        else:
            self.error("FL302", spec or line,
                       "a setting's form is a pattern in quotes, a list of them, or `flag`")
            return None
        values: dict = {}
        i = 0
        while i < len(options):
            option = options[i]
            word = option.text if isinstance(option, n.Word) else None
            if word in ("required", "repeated", "block"):
                values[word] = True
                i += 1
            elif word == "default" and i + 1 < len(options):
                value = options[i + 1]
                values["default"] = (value.text if isinstance(value, n.Word) else
                                     getattr(value, "value", None))
                i += 2
            elif (word == "max" and i + 2 < len(options) and isinstance(options[i + 1], n.Word)
                  and options[i + 1].text == "total" and isinstance(options[i + 2], n.SizeLit)):
                values["max_total"] = options[i + 2].value
                i += 3
            else:
                self.error("FL302", option, "unknown setting option",
                           "options are: required, repeated, default VALUE, max total SIZE, block")
                return None
        return SettingDecl(name, alternatives, span=line.span, **values)

    def _need(self, line: n.Command, rest) -> Need | None:
        if not rest or not isinstance(rest[0], n.Str):
            return None
        alternatives = []
        items = list(rest[1:])
        while items:
            kind = items.pop(0)
            if not isinstance(kind, n.Word) or kind.text not in ("setting", "flow") or not items:
                return None
            value = items.pop(0)
            text = value.text if isinstance(value, n.Word) else getattr(value, "value", None)
            if not isinstance(text, str):
                return None
            alternatives.append((kind.text, text))
            if items:
                joiner = items.pop(0)
                if not (isinstance(joiner, n.Word) and joiner.text == "or"):
                    return None
        return Need(rest[0].value, tuple(alternatives)) if alternatives else None

    # ------------------------------------------------------------------ events
    def event(self, decl: n.EventDecl) -> EventDecl | None:
        if not isinstance(decl.phrase, n.Str):
            return None
        fields: dict = {"pattern": parse_pattern(decl.phrase.value), "span": decl.span}
        for line in decl.body.statements:
            if not isinstance(line, n.Command):
                self.error("FL202", line, "an event declaration holds declaration lines only")
                continue
            key, rest = line.words[0], line.parts[1:]
            if key == "type" and len(rest) == 1 and isinstance(rest[0], n.Str):
                fields["type"] = rest[0].value
            elif key == "for":
                participants = self._participants(line, rest)
                if participants:
                    fields["participants"] = participants
            elif key == "payload" and all(isinstance(p, (n.Word, n.Ref)) for p in rest):
                fields["payload"] = tuple(p.text if isinstance(p, n.Word) else p.dotted for p in rest)
            elif key == "needs" and rest and all(isinstance(p, n.Word) for p in rest):
                fields["needs"] = tuple(p.text for p in rest)
            elif (key == "updates" and len(rest) == 3 and all(isinstance(p, n.Word) for p in rest)
                  and rest[1].text == "from"):
                fields["updates"] = fields.get("updates", ()) + ((rest[0].text, rest[2].text),)
            elif key == "condition" and len(rest) == 1 and isinstance(rest[0], n.Str):
                fields["condition"] = parse_pattern(rest[0].value)
            elif key == "requires" and len(rest) == 2 and all(isinstance(p, n.Word) for p in rest):
                fields["requires"] = (rest[0].text, rest[1].text)
            elif key == "scope" and len(rest) == 1 and isinstance(rest[0], n.Word):
                fields["scope"] = rest[0].text
            elif key in ("type", "for", "payload", "condition", "requires", "scope", "updates", "needs"):
                self.error("FL302", line, f"malformed `{key}` line in an event declaration")
            else:
                self.error("FL202", line.parts[0], f"unknown event declaration line `{key}`",
                           "lines are: type, for, payload, condition, requires, scope, updates, needs")
        if "type" not in fields:
            self.error("FL301", decl, "an event declaration needs `type \"kind.name\"`")
            return None
        event = EventDecl(**fields)
        self.registry.events.append(event)
        return event


def _key_for(reader, line, rest, fields, settings, needs, effects):
    participants = reader._participants(line, rest)
    if participants:
        fields["participants"] = participants


def _key_setting(reader, line, rest, fields, settings, needs, effects):
    setting = reader._setting(line, rest)
    if setting:
        settings.append(setting)


def _key_needs(reader, line, rest, fields, settings, needs, effects):
    if (len(rest) == 3 and all(isinstance(p, n.Word) for p in rest)
            and rest[0].text == "authorization" and rest[1].text == "when"):
        fields["authorization_flag"] = rest[2].text
        return
    need = reader._need(line, rest)
    if need is None:
        reader.error("FL302", line, "malformed `needs` line",
                     'write `needs "a sender" setting from or flow "email from"` '
                     "or `needs authorization when FLAG`")
    else:
        needs.append(need)


def _key_manual(reader, line, rest, fields, settings, needs, effects):
    fields["manual"] = True


def _key_produces(reader, line, rest, fields, settings, needs, effects):
    if all(isinstance(p, n.Str) for p in rest):
        fields["produces"] = tuple(p.value for p in rest)
    else:
        reader.error("FL302", line, 'write the event types in quotes: `produces "email.sent"`')


def _key_effect(reader, line, rest, fields, settings, needs, effects):
    words = [p.text for p in rest if isinstance(p, n.Word)]
    if len(words) == len(rest) and len(words) in (2, 4) and (len(words) == 2 or words[2] == "setting"):
        effects.append(Effect(words[0], words[1], words[3] if len(words) == 4 else None))
    else:
        reader.error("FL302", line, "malformed `effect` line",
                     "write `effect VERB KIND` or `effect VERB KIND setting NAME`")


def _key_when(reader, line, rest, fields, settings, needs, effects):
    words = [p.text if isinstance(p, n.Word) else p.value if isinstance(p, n.Str) else None for p in rest]
    if (len(words) == 4 and words[0] == "missing" and words[2] == "follow"
            and all(isinstance(w, str) for w in words)):
        fields["when_missing"] = (words[1], words[3])
    else:
        reader.error("FL302", line, 'write `when missing FIELD follow "SETTING"`')


def _key_body(reader, line, rest, fields, settings, needs, effects):
    if (len(rest) == 2 and all(isinstance(p, n.Word) for p in rest) and rest[0].text == "operations"):
        fields["operations_on"] = rest[1].text
    else:
        reader.error("FL302", line, "write `body operations ENTITY`")


def _key_scope(reader, line, rest, fields, settings, needs, effects):
    if len(rest) == 1 and isinstance(rest[0], n.Word):
        fields["scope"] = rest[0].text
    else:
        reader.error("FL302", line, "write `scope NAME`")


def _key_delivery(reader, line, rest, fields, settings, needs, effects):
    words = " ".join(p.text for p in rest if isinstance(p, n.Word))
    if words in ("at least once", "at most once"):
        fields["delivery"] = words
    else:
        reader.error("FL302", line, "write `delivery at least once` or `delivery at most once`")


_ACTION_KEYS = {
    "for": _key_for, "setting": _key_setting, "needs": _key_needs, "manual": _key_manual,
    "produces": _key_produces, "effect": _key_effect, "body": _key_body, "scope": _key_scope,
    "delivery": _key_delivery, "when": _key_when,
}


def read_declarations(files: Iterable[n.File], registry: Registry) -> list[Diagnostic]:
    """Add the schemas, actions and events of `files` to `registry`."""
    diagnostics: list[Diagnostic] = []
    reader = _Reader(registry, diagnostics)
    for file in files:
        for decl in file.declarations:
            if isinstance(decl, n.Schema):
                reader.schema(decl)
            elif isinstance(decl, n.ActionDecl):
                reader.action(decl)
            elif isinstance(decl, n.EventDecl):
                reader.event(decl)
    return diagnostics


@functools.cache
def _standard() -> Registry:
    registry = Registry()
    files = []
    for path in sorted(stdlib_dir().glob("*.flow")):
        result = parse(SourceFile(str(path), path.read_text(encoding="utf-8")))
        if result.diagnostics:
            raise RuntimeError(f"the stdlib does not parse: {result.diagnostics[0]}")
        files.append(result.file)
    problems = read_declarations(files, registry)
    if problems:
        raise RuntimeError(f"the stdlib is malformed: {problems[0]}")
    return registry


def standard_registry() -> Registry:
    """A fresh copy of the stdlib's registry (parsed once per process)."""
    return _standard().copy()
