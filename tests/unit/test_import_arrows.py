"""Imports point down: the lower layers never import the layers built on them.

Every import counts, at the top, inside a function or under ``TYPE_CHECKING``: a hidden
upward import is how a cycle creeps back in.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPPER = {"commands", "api", "cli", "bootstrap", "replay"}
LOWER = ["domain", "event_store", "projections", "adapters"]
# The command line is the top layer: everything else may be imported by it, never the reverse.
BELOW_THE_CLI = [*LOWER, "commands", "api", "bootstrap", "replay"]


def upward_imports(package: str, upper: set[str] = UPPER) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                for name in names
                if name.split(".")[0] in upper
            ]
    return found


@pytest.mark.parametrize("package", LOWER)
def test_lower_layers_never_import_upper_ones(package: str) -> None:
    assert upward_imports(package) == []


@pytest.mark.parametrize("package", BELOW_THE_CLI)
def test_nothing_below_the_cli_imports_it(package: str) -> None:
    # ``python -m api`` is an entry point like ``janus serve``: it runs the CLI's command.
    entry_point = f"{package}/__main__.py:"
    found = [hit for hit in upward_imports(package, {"cli"}) if not hit.startswith(entry_point)]
    assert found == []


def test_the_api_receives_parts_and_never_the_composition_root() -> None:
    # bootstrap/api.py builds the API's parts from the container and hands them over; the API
    # imports nothing of bootstrap (not the container, not its settings, not its wiring).
    assert upward_imports("api", {"bootstrap"}) == []


def test_replay_is_a_library_of_history_not_command_line_code() -> None:
    assert upward_imports("replay", {"cli"}) == []


def test_replay_takes_its_parts_and_builds_nothing() -> None:
    # Only the settings' type (what a store was opened with); never the container, the model
    # loader or any other wiring: the CLI hands replay the parts it uses.
    found = upward_imports("replay", {"bootstrap"})
    assert [hit for hit in found if not hit.endswith(" imports bootstrap.settings")] == []
    assert upward_imports("replay", {"typer"}) == []


def test_domain_imports_only_the_stdlib_eventsourcing_and_itself() -> None:
    allowed = {"domain", "eventsourcing", "__future__"}
    outside = []
    for path in sorted((ROOT / "domain").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top = node.module.split(".")[0]
                if top not in allowed and top not in sys.stdlib_module_names:
                    outside.append(f"{path.name}:{node.lineno} {node.module}")
    assert outside == []
