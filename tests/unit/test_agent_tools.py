"""The agent's device tools narrow the action catalogue's schemas for the model's grammar; they
must never offer the model an action or a parameter the catalogue (the gate) would refuse."""

from __future__ import annotations

from pathlib import Path

from adapters.effects import (
    DOOR_PARAMETERS,
    EffectRegistry,
    Ledger,
    SimulatedDoorLock,
    SimulatedNotifier,
)
from commands.agent_tools import DOORS, device_actions


def _catalogue(tmp_path: Path) -> EffectRegistry:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    return EffectRegistry([SimulatedDoorLock(ledger), SimulatedNotifier(ledger)])


def test_every_device_tool_is_a_catalogue_action(tmp_path: Path) -> None:
    catalogue = _catalogue(tmp_path).catalogue
    for tool in device_actions():
        assert tool.name in catalogue
        assert catalogue.spec(tool.name).hazard is tool.hazard


def test_every_call_the_tool_grammar_allows_passes_the_gate(tmp_path: Path) -> None:
    catalogue = _catalogue(tmp_path).catalogue
    samples = {
        "unlock_door": [{"door": door} for door in DOORS],
        "lock_door": [{"door": door} for door in DOORS],
        "notify": [{"to": "operator", "message": "x" * 160}],
    }
    assert set(samples) == {tool.name for tool in device_actions()}
    for name, calls in samples.items():
        for parameters in calls:
            catalogue.check(name, parameters)  # raises InvalidAction if the gate would refuse
    assert "door" in DOOR_PARAMETERS["properties"]
