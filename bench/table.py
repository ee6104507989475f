"""The short human table printed after a measurement."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

from bench.allocator import current_state
from bench.measure import Measurement


def _f(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def measurement_table(rows: Iterable[Measurement], percentile: float = 90.0, title: str = "") -> Table:
    table = Table(title=title or None, header_style="bold")
    for col in ("model", "device", "prec/mode", "params M", "GMACs", "median ms", f"p{percentile:g} ms",
                "p99 ms", "IQR ms", "CV", "peak MiB", "energy mJ", "status"):
        table.add_column(col, justify="left" if col in ("model", "device", "prec/mode", "status") else "right")
    for m in rows:
        lat = m.latency
        if lat is not None:
            cells = [_f(lat.median_ms), _f(lat.percentile_ms(percentile)), _f(lat.p99_ms), _f(lat.iqr_ms),
                     _f(lat.cv, "{:.3f}")]
        elif m.prediction is not None:
            cells = [_f(m.prediction.latency_ms) + "*", "-", "-", "-", "-"]
        else:
            cells = ["-"] * 5
        table.add_row(m.model, m.device_name[:28], f"{m.precision}/{m.execution_mode}", _f(m.params / 1e6),
                      _f(m.macs.gmacs if m.macs else None, "{:.3f}"), *cells, _f(m.peak_memory_mib, "{:.1f}"),
                      _f(m.energy_mj_per_inference), m.status if not m.error else f"error: {m.error[:60]}")
    return table


def print_measurements(rows: Iterable[Measurement], percentile: float = 90.0, title: str = "") -> None:
    rows = list(rows)
    # Off a terminal rich assumes 80 columns, which squeezes the table unreadable in logs.
    console = Console() if sys.stdout.isatty() else Console(width=180)
    console.print(measurement_table(rows, percentile, title))
    if any(m.prediction is not None for m in rows):
        console.print("* predicted by the roofline estimate from the profile's device constants, not measured")
    methods = sorted({m.memory.method for m in rows if m.memory is not None})
    if methods:
        console.print(f"peak MiB: {', '.join(methods)} (bench.memory)")
    state = current_state()
    if state is not None and any(m.latency is not None and m.latency.timer == "perf_counter" for m in rows):
        console.print(f"timed with the {state.text()}")
    for m in rows:
        for note in m.notes:
            console.print(f"[yellow]note[/yellow] {m.model}: {note}")
