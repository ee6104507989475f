"""One process per output folder: a second `tocsr` pointed at the same folder refuses, naming the first.

flock(2) on <folder>/.tocsr.lock: the kernel releases it when its holder exits, even by SIGKILL, so
a killed run never leaves a stale lock behind and the next run simply takes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from tocsr.core.errors import TocsrError


class FolderLocked(TocsrError):
    """Another process is writing to this output folder."""


@contextmanager
def folder_lock(folder: str | Path, command: str = "tocsr"):
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    if os.environ.get("RANK", "0") != "0":
        # Under `accelerate launch`/torchrun every rank runs the command; rank 0 holds the lock for
        # the group (the other ranks write nothing outside rank-0-guarded sections).
        yield path
        return
    lock = path / ".tocsr.lock"
    fh = open(lock, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        try:
            holder = json.loads(fh.read() or "{}")
        except json.JSONDecodeError:
            holder = {}
        fh.close()
        raise FolderLocked(f"{path} is in use by another tocsr process (pid {holder.get('pid', '?')}, "
                           f"`{holder.get('command', '?')}`, since {holder.get('since', '?')}); wait for it to "
                           "finish or choose another --out") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "command": command, "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        fh.flush()
        yield path
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()
