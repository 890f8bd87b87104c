"""Rendering an action's templates over the participant's data, in the sandbox.

A template that reaches for Python internals (`{{ person.__class__ }}`) or a field
the participant does not have fails with a clear error, never runs."""
from __future__ import annotations

import functools
from typing import Callable

from jinja2 import Template, TemplateError
from jinja2 import nodes as jinja_nodes
from jinja2.sandbox import SecurityError

from flowlang.templates import environment


class RenderError(Exception):
    pass


_RECORDS = frozenset({"person", "company", "deal", "lead"})


@functools.lru_cache(maxsize=4096)
def _compiled(template: str) -> tuple[Template, bool]:
    """Templates are few and participants many: compile each template once, and
    note whether it names anything but a record (a global such as `range`)."""
    compiled = environment().from_string(template)
    names = {n.name for n in environment().parse(template).find_all(jinja_nodes.Name)
             if n.ctx == "load"}
    return compiled, bool(names - _RECORDS)


#: Names a dict answers as attributes (`items`, `__class__`, …): Jinja's getattr
#: finds those before the dict's keys, so a template naming one is left to Jinja.
_DICT_ATTRIBUTES = frozenset(dir(dict))


@functools.lru_cache(maxsize=4096)
def _plain(template: str) -> tuple | None:
    """A template of literal text and `{{ record.field }}` outputs only, as its
    parts: strings, and (record, field path) pairs; None for anything else
    (filters, tags, subscripts, a field named like a dict method), which only
    Jinja renders."""
    try:
        tree = environment().parse(template)
    except TemplateError:
        return None
    if len(tree.body) != 1 or type(tree.body[0]) is not jinja_nodes.Output:
        return None
    parts: list = []
    for node in tree.body[0].nodes:
        if type(node) is jinja_nodes.TemplateData:
            parts.append(node.data)
            continue
        path: list[str] = []
        while type(node) is jinja_nodes.Getattr and node.attr not in _DICT_ATTRIBUTES:
            path.append(node.attr)
            node = node.node
        if not path or type(node) is not jinja_nodes.Name or node.ctx != "load":
            return None
        parts.append((node.name, tuple(reversed(path))))
    return tuple(parts)


_MISSING = object()


def _render_plain(parts: tuple, participant_type: str, data: dict) -> str | None:
    """What Jinja would render for a plain template (`str()` of each field, as its
    generated code does), or None where Jinja must answer (a missing field, a
    record that is not the participant, a value that is not a plain dict), so
    that errors keep their Jinja wording."""
    out = []
    for part in parts:
        if type(part) is str:
            out.append(part)
            continue
        record, path = part
        if record != participant_type:
            return None
        value = data
        for name in path:
            if type(value) is not dict:
                return None
            value = value.get(name, _MISSING)
            if value is _MISSING:
                return None
        out.append(str(value))
    return "".join(out)


def _render_jinja(template: str, participant_type: str, data: dict) -> str:
    try:
        compiled, needs_globals = _compiled(template)
        if needs_globals:
            return compiled.render({participant_type: data})
        # no globals needed: skip merging them into a new context for every render
        return "".join(compiled.root_render_func(
            compiled.new_context({participant_type: data}, shared=True)))
    except SecurityError as e:
        raise RenderError(f"template refused by the sandbox: {e}") from None
    except TemplateError as e:
        raise RenderError(f"template error: {e}") from None
    except Exception as e:  # no loader for include/import, a range over the sandbox's limit …
        raise RenderError(f"template failed: {type(e).__name__}: {e}") from None


Renderer = Callable[[str, dict], str]


def _renderer(template: str) -> Renderer:
    """The template as a function of (participant type, data): the text itself
    if it has no `{`, a join of its parts if it is plain (with Jinja answering
    whenever the join cannot), else Jinja in the sandbox."""
    if "{" not in template:
        return lambda participant_type, data: template
    parts = _plain(template)
    if parts is None:
        return functools.partial(_render_jinja, template)
    fields = [part for part in parts if type(part) is tuple]
    if len(fields) == 1 and len(fields[0][1]) == 1 and len(parts) <= 3:
        # the commonest shape, "Hello, {{ person.first_name }}!", without the loop
        at = parts.index(fields[0])
        head = "".join(parts[:at])
        tail = "".join(parts[at + 1:])
        record, (name,) = fields[0]

        texts: dict[str, str] = {}  # by value: many share a first name, say

        def render_one(participant_type: str, data: dict) -> str:
            if participant_type == record and type(data) is dict:
                value = data.get(name, _MISSING)
                if type(value) is str:
                    text = texts.get(value)
                    if text is None:
                        text = head + value + tail
                        if len(texts) < 1024:
                            texts[value] = text
                    return text
                if value is not _MISSING:
                    try:
                        return head + str(value) + tail
                    except Exception:  # a value whose str() fails: Jinja says how
                        pass
            return _render_jinja(template, participant_type, data)
        return render_one

    def render(participant_type: str, data: dict) -> str:
        try:
            text = _render_plain(parts, participant_type, data)
        except Exception:  # a value whose str() fails: Jinja says how
            text = None
        return text if text is not None else _render_jinja(template, participant_type, data)
    return render


#: template text -> its renderer; templates are few and participants many
_RENDERERS: dict[str, Renderer] = {}


def render_text(template: str, participant_type: str, data: dict) -> str:
    return _renderer_of(template)(participant_type, data)


def _renderer_of(template: str) -> Renderer:
    found = _RENDERERS.get(template)
    if found is None:
        if len(_RENDERERS) >= 4096:
            _RENDERERS.clear()
        found = _RENDERERS[template] = _renderer(template)
    return found


def templated(do: dict) -> tuple[bool, bool]:
    """Does an action have templates in its settings, in its arguments?"""
    names = do.get("templates", ())
    return any(n != "$args" for n in names), "$args" in names


Prerender = Callable[[str, dict], tuple]


def prerender(do: dict, participant_type: str, data: dict) -> tuple[dict | None, list | None]:
    """(settings, args) of an action, each rendered if it has templates, else
    None: what a delivery renders before its handler runs, so that a refused
    template never reaches the handler."""
    return prerenderer_of(do)(participant_type, data)


def prerenderer_of(do: dict) -> Prerender:
    """`prerender` for one IR action, as a function of (participant type, data):
    made once per action, for a caller with many deliveries of it."""
    found = _PRERENDERS.get(id(do))
    if found is None or found[0] is not do:
        if len(_PRERENDERS) >= 4096:
            _PRERENDERS.clear()
        # (the action is kept alive with its plan: its id stays its own)
        found = _PRERENDERS[id(do)] = (do, _prerenderer(do))
    return found[1]


#: id(IR action) -> (the action, its prerender plan); actions are few, deliveries many
_PRERENDERS: dict[int, tuple[dict, Prerender]] = {}


def _prerenderer(do: dict) -> Prerender:
    """`prerender` for one IR action, its look-ups done once: which settings are
    templates, and each template's renderer. (IR actions are never changed in
    place: a new version is a new action.)"""
    in_settings, in_args = templated(do)
    if not in_settings and not in_args:
        return _nothing_to_render
    names = [n for n in do["templates"] if n != "$args"]
    base = do["settings"]
    if in_args and not in_settings:
        # templates in the arguments only (a follow-up's title)
        parts = [(_renderer_of(a) if isinstance(a, str) else None, a) for a in do["args"]]
        return lambda participant_type, data: (
            None, [a if render is None else render(participant_type, data) for render, a in parts])
    if in_args or any(not isinstance(base.get(n), str) for n in names):
        # lists of templates, or templates in settings and arguments: the general way
        return lambda participant_type, data: (
            _rendered_settings(do, participant_type, data) if in_settings else None,
            _rendered_args(do, participant_type, data) if in_args else None)
    if len(names) == 1:
        # the commonest shape: one template among the settings (a subject, a text)
        name = names[0]
        render = _renderer_of(base[name])

        def one(participant_type: str, data: dict) -> tuple:
            settings = base.copy()
            settings[name] = render(participant_type, data)
            return settings, None
        return one
    renders = [(n, _renderer_of(base[n])) for n in names]

    def many(participant_type: str, data: dict) -> tuple:
        settings = base.copy()
        for n, render in renders:
            settings[n] = render(participant_type, data)
        return settings, None
    return many


def _nothing_to_render(participant_type: str, data: dict) -> tuple:
    return None, None


def render_settings(do: dict, participant_type: str, data: dict) -> dict:
    """The action's settings with every template setting rendered."""
    if not templated(do)[0]:
        return dict(do["settings"])
    return _rendered_settings(do, participant_type, data)


def render_args(do: dict, participant_type: str, data: dict) -> list:
    if not templated(do)[1]:
        return list(do["args"])
    return _rendered_args(do, participant_type, data)


def _rendered_settings(do: dict, participant_type: str, data: dict) -> dict:
    settings = dict(do["settings"])
    for name in do["templates"]:
        if name == "$args":
            continue
        value = settings.get(name)
        if isinstance(value, str):
            settings[name] = _renderer_of(value)(participant_type, data)
        elif isinstance(value, list):
            settings[name] = [render_text(v, participant_type, data) if isinstance(v, str) else v
                              for v in value]
    return settings


def _rendered_args(do: dict, participant_type: str, data: dict) -> list:
    return [_renderer_of(a)(participant_type, data) if isinstance(a, str) else a
            for a in do["args"]]
