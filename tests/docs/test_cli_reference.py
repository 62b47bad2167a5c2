"""README's "CLI reference" is the parser's ``--help``, regenerated and compared here (the docs
test also runs each of its ``console run`` blocks)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.tools import cli_reference
from rotation.tools.cli import build_parser, subcommands

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def test_readme_cli_reference_matches_the_parser() -> None:
    # GIVEN the README as committed
    shown = cli_reference.current(README.read_text())

    # WHEN the reference is rendered from the parser
    fresh = cli_reference.render()

    # THEN they are the same text
    assert shown is not None, f"README.md has no {cli_reference.START} section"
    assert shown == fresh, (f"README.md's CLI reference is out of date: run "
                            f"`{cli_reference.COMMAND}` and commit README.md")


def test_the_reference_has_every_subcommand_at_a_fixed_width() -> None:
    # GIVEN / WHEN the rendered reference
    text = cli_reference.render()

    # THEN it shows the help of the root and of every subcommand, none wider than the width
    commands = [line for line in text.splitlines() if line.startswith("$ ")]
    assert commands == [f"$ COLUMNS={cli_reference.COLUMNS} rotation --help"] + [
        f"$ COLUMNS={cli_reference.COLUMNS} rotation {name} --help"
        for name in subcommands(build_parser())]
    blocks = text.split("```console run\n")[1:]
    assert all(len(line) <= cli_reference.COLUMNS for block in blocks
               for line in block.split("```")[0].splitlines()[1:])
    assert "exit status:" in text
    assert "130  interrupted" in text


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("--profile NAME", "--profile PROFILE", 1),  # stale help
    lambda text: text.replace("```console run\n", "", 1),  # a broken block
])
def test_a_stale_reference_is_caught_and_rewritten(edit: Callable[[str], str],
                                                   tmp_path: Path) -> None:
    # GIVEN a README whose reference was edited by hand
    readme = tmp_path / "README.md"
    fresh = f"# title\n\nprose\n\n{cli_reference.render()}\n\n## next\n"
    readme.write_text(edit(fresh))
    assert cli_reference.current(readme.read_text()) != cli_reference.render()

    # WHEN --write runs
    assert cli_reference.main(["--write", "--readme", str(readme)]) == 0

    # THEN the section is the parser's again, and the rest of the file is untouched
    assert readme.read_text() == fresh


def test_write_refuses_a_readme_without_the_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# title\n")
    with pytest.raises(ValueError, match="cli-reference:start"):
        cli_reference.main(["--write", "--readme", str(readme)])
    assert readme.read_text() == "# title\n"
