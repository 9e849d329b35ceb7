"""Pausing Python's cyclic garbage collector around bulk work on views.

Applying a batch keeps its decoded events and the rows they make alive until it commits, while it
allocates many more objects: the automatic collector, started every few hundred allocations,
promotes the survivors and scans them again and again (a fifth of the JetStream feed's CPU in
bench/consume.py, over a third of a rebuild's in bench/rebuild.py). What a batch makes holds no
reference cycles worth collecting early, so the collector waits until the work is done.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused(collect_generation: int | None = None) -> Iterator[None]:
    """Disable the collector for the block; afterwards collect ``collect_generation`` (the
    young garbage the block left), if given, and enable it again.

    Nested or concurrent uses leave the collector as the outermost one found it: only the use
    that disabled it enables it again.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if collect_generation is not None:
            gc.collect(collect_generation)
        gc.enable()
