"""How the `python -m tocsr.app.<tool>` scripts end: an error the user can fix is one line, as in the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from tocsr.core.errors import TocsrError

T = TypeVar("T")


def run_script(main: Callable[[], T]) -> T:
    """`main()`, with a TocsrError turned into `error: ...` and exit status 1 (TOCSR_DEBUG=1 shows the
    traceback instead)."""
    try:
        return main()
    except TocsrError as err:
        if os.environ.get("TOCSR_DEBUG"):
            raise
        raise SystemExit(f"error: {err}") from None
