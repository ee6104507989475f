"""One process per output folder: a second refuses naming the first; a killed holder leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tocsr.core.locking import FolderLocked, folder_lock


def test_a_held_folder_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = ("import time; from tocsr.core.locking import folder_lock\n"
            f"with folder_lock({str(tmp_path)!r}, 'holder'):\n    print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == b"locked"
        with pytest.raises(FolderLocked, match="in use by another tocsr process") as info:
            with folder_lock(tmp_path):
                pass
        assert "holder" in str(info.value) and str(proc.pid) in str(info.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with folder_lock(tmp_path):        # the kernel released the holder's flock when it died
        pass


def test_the_same_process_cannot_take_its_own_folder_twice(tmp_path):
    with folder_lock(tmp_path, "first"):
        with pytest.raises(FolderLocked):
            with folder_lock(tmp_path, "second"):
                pass
