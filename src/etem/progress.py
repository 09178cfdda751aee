"""Progress reporting: a tqdm bar on a terminal, plain log lines otherwise (logs, SLURM)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("etem")


def progress(
    items: Iterable[T], desc: str, total: int | None = None, every_s: float = 10.0
) -> Iterator[T]:
    """Iterate over ``items`` showing progress.

    On a terminal a tqdm bar is drawn on stderr; otherwise (Snakemake logs, SLURM) one log
    line is emitted at most every ``every_s`` seconds and at the end.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, total=total, dynamic_ncols=True)
        return
    start = last = time.monotonic()
    n = 0
    for n, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total else ""
            log.info("%s: %d%s done (%.1f/s)", desc, n, of, n / max(now - start, 1e-9))
    log.info("%s: %d done in %.1f s", desc, n, time.monotonic() - start)
