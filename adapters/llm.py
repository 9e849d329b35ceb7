"""The decision model port: a recorded prompt and its parameters in, the model's raw output out.

``RulesDecisionModel`` is the deterministic in-process twin (keyword rules, seeded sampling);
``LlamaCppDecisionModel`` runs a local GGUF model through llama.cpp (``llama-cpp-python``),
imported only when a model is first used, so nothing needs it installed until then.
"""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_TOKENS = 256
DEFAULT_CONTEXT = 2048


class ModelUnavailable(Exception):
    """No model can run here: none configured, the file is missing, or llama.cpp is absent."""


class DecisionModel(ABC):
    """Given a recorded prompt and parameters (seed, temperature, ...), return the raw output."""

    name: str

    @property
    @abstractmethod
    def digest(self) -> str:
        """Identifies the exact model (weights and all), as recorded with each decision."""

    @abstractmethod
    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        """The model's raw output for this prompt; deterministic for a fixed seed and
        temperature 0."""


def parse_action(raw_output: str) -> dict[str, Any] | None:
    """The first JSON object in the output that names an action: ``{"name", "parameters"}``."""
    decoder = json.JSONDecoder()
    start = raw_output.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(raw_output, start)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("name"), str) and value["name"]:
            parameters = value.get("parameters")
            return {
                "name": value["name"],
                "parameters": dict(parameters) if isinstance(parameters, dict) else {},
            }
        start = raw_output.find("{", start + 1)
    return None


# -- the deterministic twin ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    keyword: str
    action: str
    parameters: dict[str, Any] = field(default_factory=dict)


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("unlock", "unlock_door", {"door": "front"}),
    Rule("lock", "lock_door", {"door": "front"}),
    Rule("notify", "notify", {"to": "operator"}),
    Rule("remind", "notify", {"to": "operator"}),
    Rule("buy", "propose_order", {"side": "buy"}),
    Rule("sell", "propose_order", {"side": "sell"}),
)
FALLBACK = Rule("", "ask_operator", {})


class RulesDecisionModel(DecisionModel):
    """A deterministic stand-in for an LLM: actions by keyword, sampled by seed when hot.

    At temperature 0 it takes the first matching rule; above 0 it picks among the matching
    rules with a generator seeded by (seed, prompt), so the same seed gives the same answer.
    """

    name = "janus-rules"

    def __init__(self, rules: Sequence[Rule] = DEFAULT_RULES) -> None:
        self.rules = tuple(rules)

    @property
    def digest(self) -> str:
        body = json.dumps([asdict(r) for r in self.rules], sort_keys=True).encode()
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        text = prompt.lower()
        matching = [r for r in self.rules if r.keyword in text] or [FALLBACK]
        temperature = float(parameters.get("temperature", 0.0) or 0.0)
        if temperature <= 0:
            chosen = matching[0]
        else:
            seed = parameters.get("seed", 0)
            chosen = random.Random(f"{seed}:{prompt}").choice(matching)
        return json.dumps({"name": chosen.action, "parameters": chosen.parameters}, sort_keys=True)


# -- llama.cpp ----------------------------------------------------------------------------------


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


class LlamaCppDecisionModel(DecisionModel):
    """A local GGUF model run by llama.cpp in this process; loaded on first use."""

    def __init__(
        self, path: Path, context_size: int = DEFAULT_CONTEXT, threads: int | None = None
    ) -> None:
        if not path.is_file():
            raise ModelUnavailable(f"model file {path} does not exist")
        self.path = path
        self.name = path.name
        self.context_size = context_size
        self.threads = threads
        self._llm: Any = None
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = file_digest(self.path)
        return self._digest

    def _load(self) -> Any:
        if self._llm is None:
            try:
                # Optional and heavy: loaded with the first model, absent where no model runs.
                from llama_cpp import Llama  # noqa: PLC0415
            except ImportError:
                raise ModelUnavailable(
                    "llama.cpp is not installed here (pip install llama-cpp-python)"
                ) from None
            self._llm = Llama(
                model_path=str(self.path),
                n_ctx=self.context_size,
                n_threads=self.threads,
                verbose=False,
            )
        return self._llm

    def _grammar(self, schema: Any) -> Any:
        """A recorded ``json_schema`` parameter constrains the output exactly as it did then."""
        if not schema:
            return None
        # Same optional package as ``_load`` (already imported by the time a grammar is asked).
        from llama_cpp.llama_grammar import LlamaGrammar  # noqa: PLC0415

        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        llm = self._load()
        seed = int(parameters.get("seed", 0) or 0)
        llm.set_seed(seed)
        llm.reset()
        completion = llm.create_completion(
            prompt=prompt,
            max_tokens=int(parameters.get("max_tokens", DEFAULT_MAX_TOKENS)),
            temperature=float(parameters.get("temperature", 0.0) or 0.0),
            top_p=float(parameters.get("top_p", 0.95)),
            top_k=int(parameters.get("top_k", 40)),
            repeat_penalty=float(parameters.get("repeat_penalty", 1.0)),
            stop=list(parameters.get("stop", [])) or None,
            seed=seed,
            grammar=self._grammar(parameters.get("json_schema")),
        )
        return str(completion["choices"][0]["text"])
