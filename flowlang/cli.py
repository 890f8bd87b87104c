"""The `flowlang` command: one subcommand per verb.

Results go to stdout, status lines to stderr. Exit status, computed in one place:
0 clean, 1 findings (errors; warnings too with --strict; files to reformat with
`fmt --check`), 2 usage or I/O error.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from flowlang import report
from flowlang.check import check_project
from flowlang.diagnostics import CODES
from flowlang.project import ProjectError, find_files, load_project, read_source

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _colour(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def ignored_codes(extra=()) -> list[str]:
    """Codes hidden everywhere: `[tool.flowlang] ignore` in the nearest
    pyproject.toml, and `--ignore` on the command line."""
    from flowlang.check.suppress import find_config

    configured, _ = find_config()
    codes = configured + [c.strip().upper() for item in extra for c in item.split(",") if c.strip()]
    unknown = [c for c in codes if c not in CODES]
    if unknown:
        raise ProjectError(f"unknown diagnostic code {unknown[0]} to ignore "
                           f"(see `flowlang explain`)")
    return codes


def cmd_check(args: argparse.Namespace) -> int:
    project = load_project(args.paths)
    diagnostics = check_project(project, ignored_codes(args.ignore))
    if args.format == "text":
        sys.stdout.write(report.render_text(diagnostics, project.source, _colour(sys.stdout)))
    else:
        sys.stdout.write(report.RENDERERS[args.format](diagnostics, project.source))
    print(report.summary(diagnostics, len(project.sources)), file=sys.stderr)
    if any(d.is_error for d in diagnostics):
        return EXIT_FINDINGS
    if args.strict and diagnostics:
        return EXIT_FINDINGS
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    from flowlang.fmt import format_text

    changed, failed = [], False
    for path in find_files(args.paths):
        source = read_source(path)
        formatted, diagnostics = format_text(source.text, source.path)
        if formatted is None:
            sys.stderr.write(report.render_text(
                [d for d in diagnostics if d.is_error], lambda _: source, _colour(sys.stderr)))
            print(f"{path}: not formatted: it has syntax errors", file=sys.stderr)
            failed = True
            continue
        if formatted != source.text:
            changed.append(path)
            if not args.check:
                try:
                    path.write_text(formatted, encoding="utf-8")
                except OSError as e:
                    raise ProjectError(f"cannot write {path}: {e.strerror or e}") from None
    for path in changed:
        print(f"{'would reformat' if args.check else 'reformatted'} {path}")
    if failed:
        return EXIT_FINDINGS
    return EXIT_FINDINGS if (args.check and changed) else EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from flowlang.explain import explain

    text = explain(args.code)
    if text is None:
        raise ProjectError(f"no diagnostic code {args.code}; the codes are {', '.join(sorted(CODES))}")
    sys.stdout.write(text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlang", description="Check, format, compile, simulate and render .flow files.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser("check", help="check files and folders as one project")
    check.add_argument("paths", nargs="+", metavar="PATH")
    check.add_argument("--format", choices=["text", *report.RENDERERS], default="text",
                       help="output format (default: text)")
    check.add_argument("--strict", action="store_true", help="warnings fail the check too")
    check.add_argument("--ignore", action="append", default=[], metavar="CODE",
                       help="hide a code everywhere (repeat, or give a comma-separated list)")
    check.set_defaults(run=cmd_check)

    fmt = sub.add_parser("fmt", help="rewrite files in the canonical layout")
    fmt.add_argument("paths", nargs="+", metavar="PATH")
    fmt.add_argument("--check", action="store_true",
                     help="change nothing; list the files that would change and exit 1 if any")
    fmt.set_defaults(run=cmd_fmt)

    explain = sub.add_parser("explain", help="explain a diagnostic code, with a bad and a fixed example")
    explain.add_argument("code", metavar="CODE")
    explain.set_defaults(run=cmd_explain)

    from flowlang import cli_render, cli_runtime, cli_worker
    cli_runtime.register(sub)
    cli_render.register(sub)
    cli_worker.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    try:
        return args.run(args)
    except ProjectError as e:
        print(f"flowlang: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("flowlang: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug of ours: one line, status 2, never a traceback
        print(f"flowlang: internal error: {type(e).__name__}: {e} "
              "(please report it, with the input)", file=sys.stderr)
        if os.environ.get("FLOWLANG_DEBUG"):
            raise
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
