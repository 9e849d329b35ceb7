"""The DecisionModel contract on the deterministic rules twin."""

from __future__ import annotations

import pytest

from adapters.llm import AgentRulesModel, DecisionModel
from tests.support.decision_model_contract import DecisionModelContract


class TestAgentRulesModel(DecisionModelContract):
    @pytest.fixture
    def model(self) -> DecisionModel:
        return AgentRulesModel()
