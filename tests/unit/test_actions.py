"""The action catalogue: names, parameter schemas and hazard classes, decided by the catalogue."""

from __future__ import annotations

import pytest

from adapters.effects import EffectAdapter, EffectRegistry, Lookup
from domain.actions import ActionCatalogue, ActionSpec, HazardClass, InvalidAction, stricter

DOOR = ActionSpec(
    "unlock_door",
    HazardClass.HIGH,
    parameters={
        "type": "object",
        "properties": {
            "door": {"type": "string", "maxLength": 5},
            "minutes": {"type": "integer", "minimum": 1, "maximum": 60},
            "mode": {"enum": ["quiet", "loud"]},
        },
        "required": ["door"],
        "additionalProperties": False,
    },
)


@pytest.mark.parametrize(
    ("name", "parameters", "loc"),
    [
        ("launch_rocket", {}, ("name",)),
        ("unlock_door", {}, ("parameters", "door")),
        ("unlock_door", {"door": 5}, ("parameters", "door")),
        ("unlock_door", {"door": "front-and-back"}, ("parameters", "door")),
        ("unlock_door", {"door": "a", "minutes": True}, ("parameters", "minutes")),
        ("unlock_door", {"door": "a", "minutes": 61}, ("parameters", "minutes")),
        ("unlock_door", {"door": "a", "mode": "party"}, ("parameters", "mode")),
        ("unlock_door", {"door": "a", "window": "x"}, ("parameters", "window")),
    ],
)
def test_the_catalogue_refuses_what_it_does_not_allow_and_names_the_field(
    name: str, parameters: dict[str, object], loc: tuple[str, ...]
) -> None:
    with pytest.raises(InvalidAction) as refused:
        ActionCatalogue([DOOR]).check(name, parameters)
    assert refused.value.loc == loc


def test_the_catalogue_decides_the_hazard_and_a_caller_may_only_raise_it() -> None:
    catalogue = ActionCatalogue([DOOR, ActionSpec("notify", HazardClass.LOW)])
    assert catalogue.check("unlock_door", {"door": "a"}, HazardClass.LOW) is HazardClass.HIGH
    assert catalogue.check("notify", {}) is HazardClass.LOW
    assert catalogue.check("notify", {}, HazardClass.MEDIUM) is HazardClass.MEDIUM
    assert stricter(HazardClass.MEDIUM, None) is HazardClass.MEDIUM


def test_an_action_registered_twice_must_be_the_same_action() -> None:
    catalogue = ActionCatalogue([DOOR])
    catalogue.register(DOOR)
    with pytest.raises(ValueError, match="registered twice"):
        catalogue.register(ActionSpec("unlock_door", HazardClass.LOW))


class BareAdapter(EffectAdapter):
    actions = frozenset({"open_gate"})

    def execute(self, key: str, action: str, parameters: dict[str, object]) -> dict[str, object]:
        return {}

    def lookup(self, key: str) -> Lookup:
        raise NotImplementedError


def test_an_adapter_that_names_no_hazard_gets_the_cautious_default() -> None:
    catalogue = EffectRegistry([BareAdapter()]).catalogue
    assert catalogue.check("open_gate", {"anything": 1}) is HazardClass.HIGH
