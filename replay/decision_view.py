"""How a recorded agent decision reads in ``janus audit goal`` and ``janus replay goal``:
the situation the model was shown, what it answered, and what that cost."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

USER_TURN = "<|im_start|>user\n"


def prompt_excerpt(prompt: str, limit: int = 200) -> str:
    """The last user turn of a chat prompt (what was new to the model), else the prompt's end."""
    if USER_TURN in prompt:
        text = prompt.rsplit(USER_TURN, 1)[1].split("<|im_end|>", 1)[0]
    else:
        text = prompt[-limit:]
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def cost_line(timings: Mapping[str, Any], usage: Mapping[str, Any]) -> str:
    parts = []
    if usage:
        parts.append(
            f"tokens in {usage.get('input_tokens', 0)} out {usage.get('output_tokens', 0)}"
        )
    if "prompt_ms" in timings:
        parts.append(
            f"prompt {float(timings['prompt_ms']):.0f} ms, generation "
            f"{float(timings.get('generation_ms', 0)):.0f} ms, "
            f"{float(timings.get('tokens_per_s', 0)):.1f} tokens/s"
        )
    return " · ".join(parts)


def decision_rows(event: Any) -> list[tuple[str, str]]:
    """Rows for one ``Goal.DecisionRecorded``: step, prompt, output, cost, context, runtime."""
    rows = [
        ("step", str(getattr(event, "step", 0) or "-")),
        ("prompt (last turn)", prompt_excerpt(event.prompt)),
        ("raw output", event.raw_output),
    ]
    cost = cost_line(event.timings, getattr(event, "usage", {}))
    if cost:
        rows.append(("cost", cost))
    if event.context_ids:
        at = getattr(event, "context_position", 0)
        rows.append(("context", f"{', '.join(event.context_ids)} (read at #{at})"))
    runtime = getattr(event, "runtime", {})
    if runtime:
        rows.append(("runtime", ", ".join(f"{k}={v}" for k, v in runtime.items())))
    return rows
