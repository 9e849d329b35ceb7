"""The agent's tool catalogue: what the model may choose, as one JSON schema.

Three tools belong to the agent itself (``finish``, ``ask_operator``, ``search_history``); the
rest are device actions, taken from the action catalogue through ``device_actions()`` (the one
place to re-point when ``domain/actions.py`` lands). The model's output is constrained to the
schema by llama.cpp's grammar, and validated again here, so no output outside the catalogue can
ever be acted on: a prompt that says "ignore previous instructions" can still only pick a listed
tool, and a hazardous one still goes through a confirmation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.confirmation import HazardClass

MAX_TEXT_PARAM = 160
DOORS = ("front", "back", "garage")


class ToolKind(StrEnum):
    FINISH = "finish"  # completes the goal with a summary
    ASK = "ask"  # records a question for an operator
    READ = "read"  # runs in the agent, read-only; its result is recorded
    DEVICE = "device"  # an action on the world: effect via the executor, gated by hazard


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    kind: ToolKind
    hazard: HazardClass = HazardClass.LOW

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"name": {"const": self.name}, "parameters": self.parameters},
            "required": ["name", "parameters"],
        }


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _text(max_length: int = MAX_TEXT_PARAM) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length}


AGENT_TOOLS: tuple[Tool, ...] = (
    Tool(
        "finish",
        "the goal is achieved (or cannot be): say so",
        _object(summary=_text()),
        ToolKind.FINISH,
    ),
    Tool(
        "ask_operator",
        "ask a person a question and wait for the answer",
        _object(question=_text()),
        ToolKind.ASK,
    ),
    Tool(
        "search_history",
        "look up earlier goals and what happened",
        _object(query=_text(80)),
        ToolKind.READ,
    ),
)


def device_actions() -> tuple[Tool, ...]:
    """The device actions the model may choose, with grammars narrower than the action
    catalogue's (door names enumerated, every parameter required) so a small model can only
    produce calls the catalogue accepts. The catalogue (``domain/actions.py``, filled by the
    adapters) still decides: every call goes through the action gate, which validates it and
    sets its hazard; ``tests/unit/test_agent_tools.py`` keeps the two in agreement.
    """
    door = {"type": "string", "enum": list(DOORS)}
    return (
        Tool("unlock_door", "unlock a door", _object(door=door), ToolKind.DEVICE, HazardClass.HIGH),
        Tool("lock_door", "lock a door", _object(door=door), ToolKind.DEVICE, HazardClass.LOW),
        Tool(
            "notify",
            "send a message to the operator",
            _object(to={"type": "string", "enum": ["operator"]}, message=_text()),
            ToolKind.DEVICE,
            HazardClass.LOW,
        ),
    )


class InvalidToolCall(ValueError):
    """The output names no catalogue tool, or its parameters do not fit the tool's schema."""


class ToolCatalogue:
    def __init__(self, tools: tuple[Tool, ...] | None = None) -> None:
        chosen = tools if tools is not None else (*AGENT_TOOLS, *device_actions())
        self.tools = {tool.name: tool for tool in chosen}

    def __getitem__(self, name: str) -> Tool:
        return self.tools[name]

    @property
    def names(self) -> list[str]:
        return list(self.tools)

    def json_schema(self) -> dict[str, Any]:
        """One alternative per tool: the name fixes which parameters may follow."""
        return {"anyOf": [tool.schema() for tool in self.tools.values()]}

    def digest(self) -> str:
        body = json.dumps(self.json_schema(), sort_keys=True).encode()
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def parse(self, raw_output: str) -> dict[str, Any]:
        """The tool call in the output, checked against the catalogue, or InvalidToolCall."""
        try:
            value = json.loads(raw_output)
        except ValueError as error:
            raise InvalidToolCall(f"output is not one JSON object: {error}") from None
        if not isinstance(value, dict):
            raise InvalidToolCall("output is not a JSON object")
        name = value.get("name")
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise InvalidToolCall(f"name {name!r} is not one of {', '.join(self.tools)}")
        parameters = value.get("parameters")
        if not isinstance(parameters, dict):
            raise InvalidToolCall("parameters must be a JSON object")
        _check_object(tool.parameters, parameters, f"{tool.name}.parameters")
        return {"name": tool.name, "parameters": parameters}


def _check_object(schema: dict[str, Any], value: dict[str, Any], path: str) -> None:
    """The subset of JSON schema the catalogue uses: required string fields, enums, lengths."""
    properties: dict[str, Any] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            raise InvalidToolCall(f"{path}.{key} is required")
    for key, item in value.items():
        spec = properties.get(key)
        if spec is None:
            raise InvalidToolCall(f"{path}.{key} is not a parameter of this tool")
        if not isinstance(item, str):
            raise InvalidToolCall(f"{path}.{key} must be a string")
        if "enum" in spec and item not in spec["enum"]:
            raise InvalidToolCall(f"{path}.{key} must be one of {spec['enum']}")
        if len(item) < spec.get("minLength", 0) or len(item) > spec.get("maxLength", 1 << 30):
            raise InvalidToolCall(f"{path}.{key} has a length outside the schema's bounds")
