"""The training progress display: one updating line on a terminal, a few plain
lines elsewhere, nothing when turned off (:class:`Progress`, used by
:mod:`npmdn.training`)."""

from __future__ import annotations

import sys
import time


def _fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Report ``epoch``, train and validation NLL and the time left.

    ``enabled=None`` shows the display only when ``stream`` is a terminal.
    On a terminal the line is redrawn in place; otherwise about 10 lines are
    written over the whole run so logs stay short.
    """

    def __init__(self, total: int, enabled: bool | None = None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = tty if enabled is None else bool(enabled)
        self.tty = tty
        self.total = total
        self.start = time.perf_counter()
        self.every = max(1, total // 10)

    def update(self, epoch: int, train: float, val: float | None = None) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        left = elapsed / epoch * (self.total - epoch) if epoch else 0.0
        width = len(str(self.total))
        msg = f"epoch {epoch:>{width}}/{self.total}  train NLL {train:9.4f}"
        if val is not None:
            msg += f"  val NLL {val:9.4f}"
        msg += f"  {_fmt_seconds(elapsed)} elapsed, {_fmt_seconds(left)} left"
        if self.tty:
            filled = int(20 * epoch / self.total)
            bar = "#" * filled + "-" * (20 - filled)
            self.stream.write(f"\r[{bar}] {msg}")
        elif epoch % self.every == 0 or epoch == self.total or epoch == 1:
            self.stream.write(msg + "\n")
        self.stream.flush()

    def close(self, note: str | None = None) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\n")
        if note:
            self.stream.write(note + "\n")
        self.stream.flush()
