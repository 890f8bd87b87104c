"""`flowlang explain CODE`: the long explanation of a diagnostic, with a bad and a
fixed example, read from docs/diagnostics.md so that the docs are the one source."""
from __future__ import annotations

import re

from flowlang.diagnostics import CODES
from flowlang.resources import diagnostics_doc

_SECTION = re.compile(r"^## (FL\d{3})\n(.*?)(?=^## FL|\Z)", re.S | re.M)


def sections() -> dict[str, str]:
    return dict(_SECTION.findall(diagnostics_doc().read_text(encoding="utf-8")))


def explain(code: str) -> str | None:
    """The plain text for `code`, or None when there is no such code."""
    code = code.strip().upper()
    if code not in CODES:
        return None
    body = sections().get(code, "").strip()
    body = re.sub(r"^\*\*.+?\*\* · \w+\n+", "", body)  # the title line: said in the header
    body = re.sub(r"\*\*(.+?)\*\*", r"\1", body)       # bold
    body = re.sub(r"\*(Why it matters\.)\*", r"\1", body)
    body = re.sub(r"```flow\n(.*?)```", lambda m: _indent(m.group(1)), body, flags=re.S)
    return f"{code}: {CODES[code].title} ({CODES[code].severity.value})\n\n{body}\n"


def _indent(code: str) -> str:
    return "\n".join("    " + line if line else "" for line in code.rstrip("\n").split("\n"))
