"""The durable stores' JSON (`sqlstore._dumps` / `_loads`: orjson for speed)
keeps exactly what the json module kept: big integers, NaN and infinity, keys
that are not strings, the read-only and set values participants hold; and
refuses what it refused."""
from __future__ import annotations

import datetime as dt
import json
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlang.runtime.sqlstore import _dumps, _json_dumps, _loads

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
           | st.integers(min_value=2**63 - 5, max_value=2**64 + 5)
           | st.sampled_from([float("nan"), float("inf"), -float("inf"), 2**70, -2**70, 0.1, 1e-7]))
VALUES = st.recursive(
    SCALARS,
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4)
                   | st.dictionaries(st.text(max_size=6), inner, max_size=3).map(MappingProxyType)
                   | st.frozensets(st.text(max_size=4), max_size=3)),
    max_leaves=12)


def _same(value) -> str:
    """A value as comparable text (NaN equals NaN here)."""
    return json.dumps(value, sort_keys=True)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_a_value_reads_back_as_the_json_module_would_have_kept_it(value):
    try:
        expected = json.loads(_json_dumps(value))
    except (TypeError, ValueError):  # unencodable: lone surrogates and the like
        with pytest.raises((TypeError, ValueError)):
            _loads(_dumps(value))
        return
    assert _same(_loads(_dumps(value))) == _same(expected)


def test_texts_the_json_module_wrote_read_back_the_same():
    # stores written before orjson: a long number stays an integer, NaN stays NaN
    for text in ['{"id":123456789012345678901234567890}', '[NaN,Infinity,-Infinity]',
                 '{"phone":"+47 12345678901234567890","n":1}', '{"big":1e400}']:
        assert _same(_loads(text)) == _same(json.loads(text))
    assert _loads('{"id":123456789012345678901234567890}')["id"] == 123456789012345678901234567890


@pytest.mark.parametrize("value", [{"when": dt.datetime(2026, 1, 1)}, {"x": object()},
                                   {"d": dt.date(2026, 1, 1)}])
def test_what_json_cannot_hold_is_refused_with_its_type(value):
    with pytest.raises(TypeError, match="cannot be stored"):
        _dumps(value)
