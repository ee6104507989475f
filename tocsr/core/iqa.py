"""pyiqa metrics without downloads: a metric loads only if its weights are already in the local cache.

pyiqa fixes its weight folder at import ($TORCH_HOME/hub/pyiqa). Any download it attempts is made
to fail fast (HF_HUB_OFFLINE, a socket timeout) and is reported as "unavailable" with the path that
was looked in, never as a crash and never as zero.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path


def pyiqa_cache_dir() -> Path:
    torch_home = os.environ.get("TORCH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "torch"))
    return Path(torch_home) / "hub" / "pyiqa"


@contextmanager
def _no_network(timeout_s: float = 5.0):
    old_timeout = socket.getdefaulttimeout()
    old_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    socket.setdefaulttimeout(timeout_s)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        yield
    finally:
        socket.setdefaulttimeout(old_timeout)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_metric(name: str, as_loss: bool = False, device: str = "cpu", **kwargs):
    """(metric, None) when it loads offline, else (None, reason naming the file or package missing)."""
    import contextlib
    import io
    import re

    try:
        import pyiqa
    except ImportError:
        return None, "pyiqa is not installed"
    captured = io.StringIO()
    with _no_network(), contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
        try:
            return pyiqa.create_metric(name, as_loss=as_loss, device=device, **kwargs), None
        except ModuleNotFoundError as err:
            return None, f"needs the package {err.name!r}, which is not installed"
        except Exception as err:  # noqa: BLE001  pyiqa raises many types when weights are missing
            wanted = re.findall(r"Downloading: \S+ to (\S+)", captured.getvalue())
            where = f"expected weights at {wanted[-1]}" if wanted else f"looked in {pyiqa_cache_dir()}"
            return None, f"weights not found offline ({where}; download failed: {type(err).__name__})"
