"""The progress line of long work, as CI logs show it (stderr not a terminal)."""

from __future__ import annotations

import re

from tocsr.core.training import progress


def test_more_work_than_announced_grows_the_total_and_prints_no_line_per_call(capsys, monkeypatch):
    """A cost table's refits measure more candidates than the bar announced: it printed one line per call
    past the total, each with a count above it and a negative eta (`costs/cpu-2core: 189/176 (eta -15 s)`)."""
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr("tocsr.core.training.time.perf_counter", lambda: next(clock))
    with progress("costs/test", 4) as bar:
        for _ in range(10):
            bar.update(1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("costs/test: 4/4") for line in lines)
    assert len(lines) <= 3, lines                       # the first, the announced end, none per extra call
    for line in lines:
        done, total = map(int, re.search(r": (\d+)/(\d+)", line).groups())
        assert done <= total and "eta -" not in line, line
