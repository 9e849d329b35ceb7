from __future__ import annotations

import pytest

from domain.meta import Actor, ActorKind, CommandContext


@pytest.fixture
def ctx() -> CommandContext:
    return CommandContext(
        command_id="cmd-1",
        correlation_id="goal-1",
        causation_id="cmd-1",
        actor=Actor(ActorKind.USER, "alice"),
        node_id="test",
    )
