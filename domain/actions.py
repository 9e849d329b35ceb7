"""The action catalogue: every action Janus can take, its parameter schema and its hazard class.

This is the one gate's knowledge. Whoever asks for an action (an agent's decision, a job fire,
the API, the CLI) names it here; the catalogue refuses names it does not know and parameters
its schema does not allow, and it decides the hazard class: a caller may ask for more caution,
never for less. Adapters register the actions they perform (adapters/effects.py); the agent's
own tools (finish, ask_operator, ...) will be registered the same way.

The schemas use a small, explicit subset of JSON Schema (object, properties, required,
additionalProperties, type, enum, minLength/maxLength, minimum/maximum) so the domain needs
nothing beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain.errors import InvalidValue


class HazardClass(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return list(HazardClass).index(self)


POLICY_GRANTOR = "policy:low-hazard"


def granted_by_policy(hazard: HazardClass) -> bool:
    """Only a low hazard runs without a person's grant; medium and high wait for one."""
    return hazard is HazardClass.LOW


def stricter(first: HazardClass, second: HazardClass | None) -> HazardClass:
    return first if second is None or first.rank >= second.rank else second


class InvalidAction(InvalidValue):
    """An action request the catalogue refuses; ``loc`` is the path inside the action."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}")
        self.loc = loc
        self.message = message


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _check(schema: Mapping[str, Any], value: Any, loc: tuple[str | int, ...]) -> None:
    kind = schema.get("type")
    # bool is an int in Python, but not in JSON.
    if kind is not None and (
        not isinstance(value, _TYPES[kind]) or (isinstance(value, bool) and kind != "boolean")
    ):
        raise InvalidAction(loc, f"must be of type {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidAction(loc, f"must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise InvalidAction(loc, f"must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise InvalidAction(loc, f"must have at most {schema['maxLength']} characters")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise InvalidAction(loc, f"must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise InvalidAction(loc, f"must be <= {schema['maximum']}")
    if isinstance(value, dict):
        _check_object(schema, value, loc)


def _check_object(
    schema: Mapping[str, Any], value: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            raise InvalidAction((*loc, name), "is required")
    for name, item in value.items():
        if name in properties:
            _check(properties[name], item, (*loc, name))
        elif schema.get("additionalProperties", True) is False:
            raise InvalidAction((*loc, name), "is not a parameter of this action")


@dataclass(frozen=True)
class ActionSpec:
    """One entry of the catalogue: what the action is called, what it takes, how hazardous."""

    name: str
    hazard: HazardClass
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "additionalProperties": False}
    )

    def validate(self, parameters: dict[str, Any]) -> None:
        _check({**self.parameters, "type": "object"}, parameters, ("parameters",))


class ActionCatalogue:
    """Every action the gate lets through, by name."""

    def __init__(self, specs: Iterable[ActionSpec] = ()) -> None:
        self._specs: dict[str, ActionSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ActionSpec) -> None:
        known = self._specs.get(spec.name)
        if known is not None and known != spec:
            raise ValueError(f"action {spec.name!r} is registered twice with different specs")
        self._specs[spec.name] = spec

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Any:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def spec(self, name: str) -> ActionSpec:
        found = self._specs.get(name)
        if found is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise InvalidAction(("name",), f"unknown action {name!r}; known actions: {known}")
        return found

    def check(
        self, name: str, parameters: dict[str, Any], asked: HazardClass | None = None
    ) -> HazardClass:
        """Refuse what the catalogue does not allow; return the hazard class that applies."""
        spec = self.spec(name)
        spec.validate(parameters)
        return stricter(spec.hazard, asked)
