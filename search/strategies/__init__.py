"""Search strategies behind one ask/tell interface; `build_strategy(name, ...)` is the front door."""

from __future__ import annotations

from search.strategies.base import Strategy, list_strategies, make_strategy  # noqa: F401
