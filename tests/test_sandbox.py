"""Templates cannot reach Python internals (DESIGN §3.5, §10).

The known Jinja2 sandbox escapes are tried through `render_text` and through a
full engine delivery; each must fail cleanly (a RenderError; a failed
participant with the error kept), never run, and never change the data.
Several of them pass `flowlang check` (the checker only knows field paths), so
the runtime's sandbox is the line that holds.
"""
from __future__ import annotations

import copy
import datetime as dt

import pytest

from flowlang import CompileError, Engine, VirtualClock, compile_project, project_from_texts
from flowlang.runtime.render import RenderError, render_settings, render_text

UTC = dt.timezone.utc
START = dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

DATA = {"first_name": "Ann", "full_name": "Ann Berg", "tags": ["vip"],
        "company": {"name": "Acme", "country": "NO"}}

#: Escapes the sandbox must refuse: each raises RenderError.
ESCAPES = [
    "{{ person.__class__ }}",
    "{{ person.__class__.__mro__ }}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ (1).__class__ }}",
    "{{ person.first_name.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].system('true') }}",
    "{{ lipsum.__code__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self.__dict__ }}",
    "{{ person|attr('__class__') }}",
    "{{ person|attr('__cla' ~ 'ss__') }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ person['__class__'] }}",
    "{{ ''['__cla' ~ 'ss__'] }}",
    "{{ person.get.__self__ }}",
    "{{ person.items.__self__.__class__ }}",
    "{{ person.first_name.__getattribute__('__class__') }}",
    "{{ person.first_name.__len__() }}",
    "{{ dict.__base__ }}",
    "{% set x = person.update({'first_name': 'Eve'}) %}{{ x }}",
    "{{ person.update({'first_name': 'Eve'}) }}",
    "{{ person.pop('first_name') }}",
    "{{ person.clear() }}",
    "{{ person.setdefault('admin', True) }}",
    "{{ person.tags.append('admin') }}",
    "{{ person.tags.pop() }}",
    "{{ person.company.update({'name': 'Evil'}) }}",
    "{{ '{0.__class__}'.format(person) }}",
    "{{ '{0.__class__.__mro__}'.format(person.first_name) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ '{x.__class__}'.format_map({'x': person}) }}",
    "{{ '{0.__class__}'|attr('format')(person) }}",
    "{{ '%s'|format(person.__class__) }}",
    "{% for c in ''.__class__.__mro__[-1].__subclasses__() %}{{ c }}{% endfor %}",
    "{{ person|selectattr('__class__')|list }}",
    "{{ config }}",
    "{{ request.application.__globals__ }}",
    "{{ __builtins__ }}",
    "{{ getattr(person, '__class__') }}",
    "{{ globals() }}",
    "{{ range.__self__ }}",
    "{{ lipsum.func_globals }}",
]

#: Template features that cannot be used without a loader; each must be a
#: RenderError too (not a TypeError that escapes the renderer).
NO_LOADER = [
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% extends '/etc/passwd' %}",
    "{% from 'x' import y %}",
]

#: Rendering a huge range is refused by the sandbox with an OverflowError.
RESOURCE = ["{{ range(100000000)|list|length }}"]

MARKERS = ("<class", "__", "module", "jinja2", "globals", "subclasses", "builtins", "os.", "Eve", "admin")


@pytest.mark.parametrize("template", ESCAPES)
def test_render_text_refuses_sandbox_escapes(template):
    data = copy.deepcopy(DATA)
    with pytest.raises(RenderError):
        render_text(template, "person", data)
    assert data == DATA  # nothing was changed either


@pytest.mark.parametrize("template", NO_LOADER + RESOURCE)
def test_render_text_refuses_loader_tags_and_huge_ranges(template):
    with pytest.raises(RenderError):
        render_text(template, "person", copy.deepcopy(DATA))


@pytest.mark.parametrize("template", [
    "{{ person|map(attribute='__class__')|list }}",
    "{{ ['__class__']|map('attr', '__class__')|list }}",
    "{% set ns = namespace() %}{% set ns.__class__ = 1 %}{% set ns.__dict__ = 1 %}done",
    "{{ person.first_name|string|attr('format')('{0.__class__}', person) }}",
])
def test_tricks_that_render_show_nothing_internal(template):
    """Some tricks render (Jinja gives Undefined for an unsafe attribute through
    `map`, a namespace keeps assignments to itself): whatever they print holds
    no Python internals, and the data is unchanged."""
    data = copy.deepcopy(DATA)
    try:
        out = render_text(template, "person", data)
    except RenderError:
        return
    assert not any(marker in out for marker in MARKERS), out
    assert data == DATA


def test_participant_data_is_never_rendered_as_a_template():
    data = {"first_name": "{{ person.__class__ }}{{ 7 * 7 }}", "company": {"name": "{% raw %}x"}}
    assert render_text("Hi {{ person.first_name }}", "person", data) == \
        "Hi {{ person.__class__ }}{{ 7 * 7 }}"
    assert render_text("{{ person.company.name }}", "person", data) == "{% raw %}x"


def test_ordinary_templates_still_render():
    assert render_text("Hi {{ person.first_name }} of {{ person.company.name }}", "person", DATA) \
        == "Hi Ann of Acme"
    assert render_text("{{ person.tags|join(', ') }} {{ person.full_name|upper }}", "person", DATA) \
        == "vip ANN BERG"
    assert render_text("{% if person.tags %}yes{% endif %}", "person", DATA) == "yes"
    with pytest.raises(RenderError, match="undefined|attribute"):
        render_text("{{ person.last_name }}", "person", DATA)


def test_render_settings_renders_only_template_settings():
    do = {"settings": {"subject": "Hi {{ person.first_name }}", "from": "{{ not a template }}",
                       "attach": ["a {{ person.first_name }}.pdf"]},
          "templates": ["subject", "attach"]}
    assert render_settings(do, "person", DATA) == {
        "subject": "Hi Ann", "from": "{{ not a template }}", "attach": ["a Ann.pdf"]}
    do["settings"]["subject"] = "{{ person.__class__ }}"
    with pytest.raises(RenderError):
        render_settings(do, "person", DATA)


PRERENDER_SHAPES = {
    "nothing": {"settings": {"from": "a@b.example"}, "args": ["X"], "templates": []},
    "one setting": {"settings": {"subject": "Hi {{ person.first_name }}", "from": "{{ no }}"},
                    "args": ["{{ no }}"], "templates": ["subject"]},
    "two settings": {"settings": {"subject": "Hi {{ person.first_name }}",
                                  "text": "{{ person.company.name | upper }}", "n": 3},
                     "args": [], "templates": ["subject", "text"]},
    "a list": {"settings": {"attach": ["a {{ person.first_name }}.pdf", 7]},
               "args": [], "templates": ["attach"]},
    "args only": {"settings": {"type": "Call {{ no }}"},
                  "args": ["Call {{ person.full_name }}", 2], "templates": ["$args"]},
    "args and a setting": {"settings": {"note": "{{ person.tags[0] }}"},
                           "args": ["{{ person.first_name }}"], "templates": ["$args", "note"]},
}


@pytest.mark.parametrize("shape", sorted(PRERENDER_SHAPES))
def test_prerender_plans_render_what_render_settings_and_args_render(shape):
    from flowlang.runtime.render import prerender, render_args, templated
    do = copy.deepcopy(PRERENDER_SHAPES[shape])
    in_settings, in_args = templated(do)
    for _ in range(2):  # the first call makes the action's plan, the second uses it
        settings, args = prerender(do, "person", DATA)
        assert settings == (render_settings(do, "person", DATA) if in_settings else None)
        assert args == (render_args(do, "person", DATA) if in_args else None)
    if settings is not None:  # each delivery gets settings of its own to change
        assert prerender(do, "person", DATA)[0] is not settings
    hostile = copy.deepcopy(do)
    for name in hostile["templates"]:
        if name != "$args" and isinstance(hostile["settings"][name], str):
            hostile["settings"][name] = "{{ person.__class__ }}"
            with pytest.raises(RenderError):
                prerender(hostile, "person", DATA)


# ----------------------------------------------------------------------------- through the engine

def flow_text(subject: str) -> str:
    quoted = subject.replace("\\", "\\\\").replace('"', '\\"')
    return f"""
    flow hostile {{
      settings {{ email from "a@acme.example"; email reply_to "a@acme.example" }}
      send email "X" {{ subject "{quoted}" }}
      wait 1 day
      complete
    }}"""


def hostile_machine(template: str) -> tuple[dict, bool]:
    """The flow with `template` as its e-mail subject, and whether `flowlang check`
    let it through. A template the checker refuses is put into the compiled IR by
    hand, as a tampered IR file would carry it."""
    try:
        return compile_project(project_from_texts({"f.flow": flow_text(template)})).machines["hostile"], True
    except CompileError:
        machine = compile_project(project_from_texts({"f.flow": flow_text("Hello")})).machines["hostile"]
        machine = copy.deepcopy(machine)
        for state in machine["states"]:
            if state.get("do", {}).get("action") == "send email":
                state["do"]["settings"]["subject"] = template
        return machine, False


def run_hostile(template: str, handler_reads_settings: bool = True):
    machine, _ = hostile_machine(template)
    engine = Engine(clock=VirtualClock(START), max_attempts=3)
    effects = []

    def handler(delivery):
        if handler_reads_settings:
            subject = delivery.settings["subject"]
            effects.append(subject)  # the host's side effect: only after rendering
        else:
            effects.append(delivery.key)

    engine.register("send email", handler)
    engine.deploy(machine)
    engine.start("hostile")
    engine.enroll("hostile", "p1", copy.deepcopy(DATA))
    engine.run_until(START + dt.timedelta(days=2))
    return engine, effects


ENGINE_ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",  # passes `flowlang check`
    "{{ person|attr('__class__') }}",                   # passes `flowlang check`
    "{{ '{0.__class__}'.format(person) }}",             # passes `flowlang check`
    "{{ [].__class__ }}",                               # passes `flowlang check`
    "{{ person.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum.__globals__ }}",
    "{% set x = person.update({'first_name': 'Eve'}) %}",
]


@pytest.mark.parametrize("template", ENGINE_ESCAPES)
def test_an_escaping_template_fails_the_participant_cleanly(template):
    engine, effects = run_hostile(template)
    assert effects == []  # the host never got a rendered subject
    p = engine.store.participant("hostile", "p1")
    assert p.status == "failed"
    assert "sandbox" in p.error or "template" in p.error
    assert "send email" in p.error
    (row,) = engine.store.outbox()
    assert row.status == "failed" and row.attempts == 1  # a refused template is not retried
    assert p.data == DATA and engine.store.person("p1")["data"] == DATA
    assert engine.counts("hostile")["statuses"]["failed"] == 1


def test_the_checker_refuses_escapes_that_name_fields_and_loader_tags():
    for template in ("{{ person.__class__ }}", "{{ cycler.__init__.__globals__ }}",
                     "{{ lipsum.__globals__ }}", "{{ self._TemplateReference__context }}",
                     *NO_LOADER):
        assert not hostile_machine(template)[1], template


def test_a_refused_template_never_reaches_the_handler():
    engine, effects = run_hostile("{{ person|attr('__class__') }}", handler_reads_settings=False)
    assert effects == []
    assert engine.store.participant("hostile", "p1").status == "failed"


def test_a_loader_tag_fails_at_once_in_the_engine():
    engine, effects = run_hostile("{% include '/etc/passwd' %}")
    (row,) = engine.store.outbox()
    assert row.attempts == 1 and row.status == "failed"
