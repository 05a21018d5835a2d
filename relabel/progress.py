"""Progress bars for long loops (LLM calls, documents): tqdm on a terminal's stderr, silent elsewhere (the
daemon, tests, pipes), with an optional log line every ``log_every`` items for the run's event log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm


class ProgressBars:
    """One bar per name (e.g. per teacher model), fed cumulative counts: ``bars(name, done, total)``. Use it as
    a context manager so the bars close."""

    def __init__(
        self, unit: str, log: Callable[[str], Any] | None = None, log_every: int = 25, disable: bool | None = None
    ) -> None:
        self.unit = unit
        self.log = log
        self.log_every = log_every
        self.disable = disable  # None: a bar only when stderr is a terminal (tqdm's rule)
        self.bars: dict[str, tqdm] = {}

    def __call__(self, name: str, done: int, total: int | None = None) -> None:
        bar = self.bars.get(name)
        if bar is None:
            bar = self.bars[name] = tqdm(total=total, desc=name, unit=self.unit, leave=False, disable=self.disable)
        bar.update(done - bar.n)
        if self.log is not None and (done % self.log_every == 0 or done == total):
            self.log(f"{name}: {done}/{total if total is not None else '?'} {self.unit}")

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars.values():
            bar.close()
