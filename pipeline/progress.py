"""Progress bars that also show in logs: tqdm in a terminal, periodic log lines elsewhere.

Under `dvc exp run` into a log file, or a queued experiment, stderr is not a terminal; a plain tqdm
bar then either hides itself or fills the file with carriage returns. `progress(...)` is tqdm with,
off a terminal, its bar written as one log line every `log_every` seconds (with the rate and the
ETA tqdm computes); a loop shorter than that writes nothing (the stages log their own summaries).
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

log = logging.getLogger("pipeline.progress")


class _LogLines:
    """A file-like sink for tqdm: every refreshed bar becomes one log line."""

    def write(self, text: str) -> None:
        line = text.strip("\r\n ")
        if line:
            log.info(line)

    def flush(self) -> None:
        pass


class _LogBar(tqdm):
    """tqdm that shows itself only once `log_every` seconds have passed (no 0 % / 100 % lines for a
    loop of a few seconds)."""

    log_every = 30.0

    def display(self, msg=None, pos=None):
        if self.format_dict["elapsed"] < self.log_every:
            return True
        return super().display(msg, pos)


def progress(iterable=None, *, log_every: float = 30.0, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)` in a terminal; off one, a log line every `log_every` seconds."""
    if sys.stderr.isatty():
        return tqdm(iterable, **kwargs)
    for k in ("leave", "disable", "mininterval", "dynamic_ncols"):
        kwargs.pop(k, None)
    bar = _LogBar(iterable, file=_LogLines(), mininterval=log_every, maxinterval=log_every, ascii=True,
                  dynamic_ncols=False, ncols=100, leave=True, delay=log_every, **kwargs)
    bar.log_every = log_every
    return bar
