"""Open a report in headless Chromium: did it render, did every image load, any console errors?

Uses Debian's `chromium` (installed by .ci/run). Flags keep it off the network entirely.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=8000", "--enable-logging=stderr", "--v=0"]


def find_chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


@dataclass(frozen=True)
class BrowserCheck:
    images_ok: int
    images_failed: int
    images_in_page: int
    console_errors: list[str]
    screenshot: Path | None


def check_page(html_path: str | Path, screenshot: str | Path | None = None, timeout_s: float = 120) -> BrowserCheck:
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    page = Path(html_path).resolve()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=timeout_s)
    shot = None
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2400",
                            f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=timeout_s)
    body = re.search(r"<body[^>]*>", dom.stdout)
    attrs = dict(re.findall(r'data-(images-ok|images-failed)="(\d+)"', body.group(0) if body else ""))
    errors = [line for line in dom.stderr.splitlines()
              if "CONSOLE" in line and ("error" in line.lower() or "Uncaught" in line)]
    return BrowserCheck(int(attrs.get("images-ok", -1)), int(attrs.get("images-failed", -1)),
                        len(re.findall(r"<img\b", dom.stdout)), errors, shot)
