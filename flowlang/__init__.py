"""flowlang: a textual language for marketing and sales automation flows.

The public API is small: parse and check sources here; the runtime comes in
`flowlang.runtime`.
"""
from flowlang.diagnostics import Diagnostic, Severity
from flowlang.project import Project, load_project, project_from_texts
from flowlang.syntax import parse_text

__all__ = ["Diagnostic", "Severity", "Project", "load_project", "project_from_texts",
           "parse_text", "__version__"]
__version__ = "0.1.0"
