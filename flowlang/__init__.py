"""flowlang: a textual language for marketing and sales automation flows.

The public API is small and lives here:

- `load_project(paths)` / `project_from_texts({path: text})` read `.flow` files;
- `check_project(project)` returns every diagnostic;
- `compile_project(project)` returns the IR of every flow and pipeline (and raises
  `CompileError` with the diagnostics when the project has errors);
- `Engine` runs compiled flows over a store and a clock (`VirtualClock` for
  simulations and tests, the real clock by default).
"""
from flowlang.check import check_project
from flowlang.compiler import CompileError, compile_project
from flowlang.diagnostics import Diagnostic, Severity
from flowlang.project import Project, load_project, project_from_texts
from flowlang.runtime.clock import RealClock, VirtualClock
from flowlang.runtime.engine import Admission, Delivery, Engine, EngineError
from flowlang.runtime.store import MemoryStore
from flowlang.syntax import parse_text

__all__ = [
    "Admission", "CompileError", "Delivery", "Diagnostic", "Engine", "EngineError",
    "MemoryStore", "Project", "RealClock", "Severity", "VirtualClock", "check_project",
    "compile_project", "load_project", "parse_text", "project_from_texts", "__version__",
]
__version__ = "0.1.0"
