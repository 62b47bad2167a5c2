"""README's "CLI reference": the ``--help`` of ``rotation`` and of each subcommand, rendered at a
fixed width so the text is the same on every machine.

The README holds the output between ``<!-- cli-reference:start -->`` and
``<!-- cli-reference:end -->``, as ``console run`` blocks (the docs test runs each command and
compares), and ``tests/docs/test_cli_reference.py`` fails when it differs from the parser. To
update it::

    .venv/bin/python -m rotation.tools.cli_reference --write
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from unittest import mock

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"
COLUMNS = 100
COMMAND = ".venv/bin/python -m rotation.tools.cli_reference --write"
README = Path(__file__).resolve().parents[2] / "README.md"


def help_texts() -> list[tuple[str, str]]:
    """(command line, its --help output) for ``rotation`` and each subcommand, at COLUMNS."""
    from rotation.tools.cli import build_parser, subcommands

    # argparse wraps to the terminal's width, which it reads from COLUMNS
    with mock.patch.dict(os.environ, {"COLUMNS": str(COLUMNS)}):
        parser = build_parser()
        texts = [("rotation --help", parser.format_help())]
        texts += [(f"rotation {name} --help", sub.format_help())
                  for name, sub in subcommands(parser).items()]
    return texts


def render() -> str:
    """The section between the markers, markers included."""
    parts = [START, f"<!-- generated from the parser by `{COMMAND}`: do not edit -->", ""]
    for command, text in help_texts():
        parts += ["```console run", f"$ COLUMNS={COLUMNS} {command}", text.rstrip("\n"), "```",
                  ""]
    return "\n".join([*parts, END])


def current(text: str) -> str | None:
    """The section as ``text`` holds it (markers included), or None without both markers."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start:end + len(END)]


def updated(text: str) -> str:
    """``text`` with its section replaced by a fresh rendering."""
    section = current(text)
    if section is None:
        raise ValueError(f"no {START} ... {END} section")
    return text.replace(section, render(), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rotation.tools.cli_reference",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="rewrite the README's section")
    parser.add_argument("--readme", type=Path, default=README, help="default: %(default)s")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(render() + "\n")
        return 0
    text = args.readme.read_text()
    fresh = updated(text)
    if fresh != text:
        args.readme.write_text(fresh)
        sys.stderr.write(f"updated the CLI reference in {args.readme}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
