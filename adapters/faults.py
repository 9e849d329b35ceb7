"""Named crash points for the crash tests: ``JANUS_CRASH_AT=name`` SIGKILLs the process there.

A real crash, not an exception: nothing gets to clean up, exactly like a power cut. Unset in
production, where each call is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(filter(None, os.environ.get("JANUS_CRASH_AT", "").split(",")))


def crash_point(name: str) -> None:
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
