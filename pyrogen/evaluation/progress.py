"""Progress of an evaluation over a data set: a bar, and how long the whole will take.

Evaluations over the test set can take minutes on a CPU (log p(x) with K = 1000
over 10,000 images; the aggregate posterior of the mutual information, N x N
densities). :class:`EvaluationProgress` shows a tqdm bar over the examples (time
left included) and, once the first batch is done, says in one lasting line how long
the whole evaluation will take when that is more than :data:`ANNOUNCE_AFTER`
seconds, so that no phase of a run is silent for long.
"""

import sys
import time

from tqdm.auto import tqdm

from pyrogen import threads

ANNOUNCE_AFTER = 10.0
"""Seconds: an evaluation estimated to take longer says so in a line of its own."""


def format_duration(seconds):
    """``"42 s"``, ``"3.5 min"`` or ``"1.2 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class EvaluationProgress:
    """A progress bar over ``total`` units of an evaluation, with an estimate after the first update.

    Use as a context manager and call :meth:`update` with the units done (examples, usually)::

        with EvaluationProgress(n, "log p(x), K = 1000", enabled=True) as progress:
            for batch in batches:
                ...
                progress.update(batch.shape[0])

    :param int total: units in all.
    :param str desc: what is evaluated (the bar's label and the estimate's first words).
    :param bool enabled: show anything at all (False: every method is a no-op).
    :param str unit: the unit's name, singular.
    :param float announce_after: seconds; a longer estimate is written as a line (stderr).
    """

    def __init__(self, total, desc, enabled=True, unit="image", announce_after=ANNOUNCE_AFTER):
        self.total, self.desc, self.enabled, self.unit = total, desc, enabled, unit
        self.announce_after = announce_after
        self.done, self.estimate, self.bar, self.start = 0, None, None, None

    def __enter__(self):
        self.start = time.perf_counter()
        if self.enabled:
            self.bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, leave=False)
        return self

    def update(self, n):
        """``n`` more units are done; after the first update, estimate the whole and say it if long."""
        self.done += n
        threads.tick()  # the thread count follows the cores other jobs leave free
        if self.bar is not None:
            self.bar.update(n)
        if self.estimate is None and self.done:
            elapsed = time.perf_counter() - self.start
            self.estimate = elapsed * self.total / self.done
            if self.enabled and self.estimate >= self.announce_after and self.done < self.total:
                tqdm.write(
                    f"{self.desc}: about {format_duration(self.estimate)} for {self.total:,} {self.unit}s "
                    f"(the first {self.done:,} took {elapsed:.1f} s)",
                    file=sys.stderr,
                )

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
