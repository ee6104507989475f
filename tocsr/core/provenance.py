"""Where a number came from: package versions, machine, device, git commit.

Every artifact embeds `environment()`, the way pytest-benchmark's machine_info and asv's machine
files do, so figures from different machines or commits are never compared silently.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]   # tocsr/core/provenance.py -> the checkout

TRACKED_PACKAGES = (
    "torch", "torchvision", "diffusers", "botorch", "gpytorch", "ultralytics-thop", "nvidia-ml-py",
    "numpy", "accelerate", "safetensors", "pyiqa", "spandrel", "nni", "optuna", "matplotlib",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit SHA and whether the tree had uncommitted changes; `None` outside a git checkout."""
    def run(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    sha = run("rev-parse", "HEAD")
    if sha is None and os.environ.get("TOCSR_GIT_SHA"):
        # A copy of the tree without .git (e.g. shipped to a GPU machine): the sender names the commit.
        return {"sha": os.environ["TOCSR_GIT_SHA"], "dirty": None, "source": "TOCSR_GIT_SHA"}
    dirty = run("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(dirty) if dirty is not None else None}


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cuda_info() -> dict[str, Any] | None:
    """Name, capability and driver of the visible CUDA devices, without initialising NVML."""
    import torch

    if not torch.cuda.is_available():
        return None
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append({"index": i, "name": props.name, "capability": f"{props.major}.{props.minor}",
                        "memory_mib": round(props.total_memory / 2**20), "multiprocessors": props.multi_processor_count})
    return {"cuda_runtime": torch.version.cuda, "devices": devices}


# Facts a process set about itself that change what it measures (bench.allocator's CPU allocator state): set
# once, then part of every artifact this process writes.
_PROCESS_FACTS: dict[str, Any] = {}


def note_process_fact(key: str, value: Any) -> None:
    _PROCESS_FACTS[key] = value


def environment(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance block embedded in every artifact."""
    import torch

    env: dict[str, Any] = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "packages": package_versions(),
        "git": git_state(),
        "cuda": cuda_info(),
        **_PROCESS_FACTS,
    }
    if extra:
        env.update(extra)
    return env


def content_sha256(obj: Any) -> str:
    """Hash of a JSON-able object's canonical form: the same content gives the same hash."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()
