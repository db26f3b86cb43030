"""Progress of selector training: a bar on a terminal, plain lines, or a callback.

``progress=None`` (the samplers' default) shows a bar on stderr when stderr is a
terminal; otherwise it prints plain lines, but only once the training has run for
:data:`QUIET_SECONDS`, so that short trainings stay silent in logs and pipes.
``True`` always reports from the start (a bar, or plain lines when stderr is not a
terminal or ``tqdm`` is not installed); ``False`` is silent; a callable is called as
``progress(epoch, losses)`` after each epoch. The first line says how many
iterations the schedule implies; plain lines end with one that gives the time.
``tqdm`` is optional (the ``progress`` extra) and imported only when a bar is drawn.
Private.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, Protocol

__all__ = ["ProgressFn", "TrainingProgress"]

#: ``progress(epoch, losses)``: called after each epoch (from 1) with the mean of each
#: loss term over the epoch's steps.
ProgressFn = Callable[[int, dict[str, float]], None]

#: Plain lines: at most this many, evenly spread over the epochs (and the last one).
_PLAIN_LINES = 10

#: ``progress=None`` without a terminal: seconds of training before the first plain line.
QUIET_SECONDS = 3.0


class _Meter(Protocol):
    def pop(self) -> dict[str, float]: ...


#: Short names of the loss terms for the bar's postfix (the plain lines use the full ones).
_SHORT = {
    "representation": "rep",
    "vae_adversarial": "vae_adv",
    "assistant_adversarial": "A_adv",
    "ranking": "rank",
    "discriminator": "disc",
}


def _losses_text(losses: dict[str, float], short: bool = False) -> str:
    if short:
        return " ".join(f"{_SHORT.get(k, k)}={v:.3g}" for k, v in losses.items())
    return ", ".join(f"{k} {v:.4g}" for k, v in losses.items())


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return (
        f"{minutes} min {secs:02d} s"
        if minutes < 60
        else f"{minutes // 60} h {minutes % 60:02d} min"
    )


def _tqdm() -> Optional[Any]:
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    except ImportError:
        return None
    return tqdm


class TrainingProgress:
    """Reports one selector training of ``schedule`` (iterations per epoch).

    ``active`` tells the loop whether to read the losses back (one host sync per
    epoch); when it is ``False`` nothing is read and nothing is printed.
    """

    def __init__(
        self,
        progress: Any,
        name: str,
        schedule: list[int],
        detail: str = "",
        stream: Any = None,
        clock: Callable[[], float] = time.perf_counter,
        quiet_seconds: Optional[float] = None,
    ) -> None:
        self.clock = clock
        self.stream = sys.stderr if stream is None else stream
        self.name = name
        self.schedule = schedule
        self.total = sum(schedule)
        self.detail = detail
        self.callback: Optional[ProgressFn] = progress if callable(progress) else None
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.mode = "off"
        if self.callback is not None:
            self.mode = "callback"
        elif progress is True or progress is None:
            self.mode = "bar" if tty and _tqdm() is not None else "lines"
        self.active = self.mode != "off"
        # Plain lines by default (no terminal) wait until the training has run this long.
        quiet = QUIET_SECONDS if quiet_seconds is None else quiet_seconds
        self._quiet = quiet if progress is None and self.mode == "lines" else 0.0
        self._printing = False
        self._bar: Optional[Any] = None
        self._done = 0
        self._start = 0.0
        n = len(schedule)
        self._report_at = {n} | {round(n * (i + 1) / _PLAIN_LINES) for i in range(_PLAIN_LINES)}

    def headline(self) -> str:
        """The first line: how many iterations the schedule implies."""
        extra = f", {self.detail}" if self.detail else ""
        return (
            f"{self.name}: training the selector for {self.total:,} iterations "
            f"({len(self.schedule)} epochs{extra})"
        )

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start(self) -> None:
        self._start = self.clock()
        if self.mode == "bar" or (self.mode == "lines" and self._quiet <= 0):
            self._printing = True
            self._print(self.headline())
        if self.mode == "bar":
            tqdm = _tqdm()
            assert tqdm is not None
            self._bar = tqdm(total=self.total, file=self.stream, unit="it", desc=self.name)

    def update(self, epoch: int, n_iter: int, meter: _Meter) -> None:
        if not self.active:
            return
        losses = meter.pop()
        self._done += n_iter
        if self.callback is not None:
            self.callback(epoch, losses)
        elif self._bar is not None:
            self._bar.set_postfix_str(_losses_text(losses, short=True), refresh=False)
            self._bar.update(n_iter)
        else:
            elapsed = self.clock() - self._start
            first = not self._printing and elapsed > self._quiet
            if first:  # the deferred start of the default plain lines
                self._printing = True
                self._print(self.headline())
            if self._printing and (first or epoch in self._report_at):
                left = elapsed * (self.total - self._done) / max(1, self._done)
                self._print(
                    f"{self.name}: epoch {epoch}/{len(self.schedule)}, iteration "
                    f"{self._done:,}/{self.total:,}; {_losses_text(losses)}; "
                    f"{_duration(elapsed)} elapsed, {_duration(left)} left"
                )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and self._printing:
            self._printing = False
            self._print(
                f"{self.name}: trained the selector, {self._done:,} iterations in "
                f"{_duration(self.clock() - self._start)}"
            )
