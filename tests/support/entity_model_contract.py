"""The one contract every EntityModel keeps, run against each implementation.

Subclass ``EntityModelContract`` and provide a ``model`` fixture (the rules twin in
tests/integration/test_entity_model_contract.py, SmolLM2 through llama.cpp in
tests/e2e/test_entity_llm.py).
"""

from __future__ import annotations

import json

import pytest

from adapters.entities import EntityModel, parse_extraction

TEXT = "Alice Smith fitted the Yale lock on the front door for Acme Ltd in London."
OTHER = "Bob Jones asked the operator to open the Garage for the Plumber."


class EntityModelContract:
    @pytest.fixture
    def model(self) -> EntityModel:
        raise NotImplementedError

    def test_identifies_itself_and_can_run(self, model: EntityModel) -> None:
        assert model.name
        assert model.digest.startswith("sha256:") and len(model.digest) == 71
        json.dumps(model.parameters)  # recorded with the extraction: must be plain JSON
        model.check()

    def test_records_its_prompt_and_raw_output_and_parses_them_back(
        self, model: EntityModel
    ) -> None:
        call = model.extract(TEXT)

        assert TEXT in call.prompt
        assert (call.entities, call.relations) == parse_extraction(call.raw_output, TEXT)

    def test_names_only_what_the_text_names_and_relates_only_those(
        self, model: EntityModel
    ) -> None:
        call = model.extract(TEXT)

        assert call.entities, "a sentence full of names yields at least one entity"
        for entity in call.entities:
            assert entity.name.casefold() in TEXT.casefold()
        names = {e.name for e in call.entities}
        for relation in call.relations:
            assert {relation.source, relation.target} <= names

    def test_the_same_text_gives_the_same_call(self, model: EntityModel) -> None:
        first = model.extract(TEXT)
        model.extract(OTHER)  # in between: no state may carry over

        assert model.extract(TEXT) == first
