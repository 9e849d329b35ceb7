"""The EntityModel contract on the deterministic rules twin, and what the twin itself finds."""

from __future__ import annotations

import pytest

from adapters.entities import (
    EntityModel,
    ExtractedEntity,
    ExtractedRelation,
    RulesEntityModel,
    parse_extraction,
)
from tests.support.entity_model_contract import EntityModelContract


class TestRulesEntityModel(EntityModelContract):
    @pytest.fixture
    def model(self) -> EntityModel:
        return RulesEntityModel()


def test_the_twin_names_capitalised_phrases_and_relates_them_within_a_sentence() -> None:
    call = RulesEntityModel().extract("The door is by Acme Ltd. Alice met Bob Jones there.")

    assert call.entities == [
        ExtractedEntity("Acme Ltd", "ORG"),
        ExtractedEntity("Alice", "THING"),
        ExtractedEntity("Bob Jones", "THING"),
    ]
    assert call.relations == [ExtractedRelation("Alice", "Bob Jones", "MENTIONED_WITH")]


def test_parsing_keeps_only_named_entities_and_relations_between_them() -> None:
    raw = (
        'noise {"entities": [{"name": "Acme", "type": "ORG"}, {"name": "Mars", "type": "PLACE"},'
        ' {"name": "acme", "type": "THING"}, {"name": "Door", "type": "SPACESHIP"}],'
        ' "relations": [{"source": "Acme", "type": "MAKES", "target": "door"},'
        ' {"source": "Acme", "type": "VISITS", "target": "Mars"},'
        ' {"source": "Acme", "type": "lower case", "target": "Door"}]}'
    )

    entities, relations = parse_extraction(raw, "Acme makes the door.")

    assert entities == [ExtractedEntity("Acme", "ORG"), ExtractedEntity("Door", "THING")]
    assert relations == [ExtractedRelation("Acme", "Door", "MAKES")]
    assert parse_extraction("not json at all", "Acme") == ([], [])
