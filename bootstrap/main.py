"""Entry point for the all-in-one process: ``python -m bootstrap`` or ``janus run``."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from bootstrap.container import Janus
from bootstrap.process import JanusProcess
from bootstrap.settings import Settings

log = logging.getLogger("janus")


def run_process(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    janus = Janus.build(settings)
    process = JanusProcess(janus)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signum)
        process.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info(
        "janus %s on %s (node %s)",
        "embedded" if settings.embedded else "server",
        settings.redacted_database_url(),
        settings.node_id,
    )
    process.start()
    # Tests and operators wait for this line instead of guessing when the process is up.
    print(f"janus ready head={janus.app.head()}", flush=True)
    process.stop_event.wait()
    process.stop()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    run_process()


if __name__ == "__main__":
    main()
