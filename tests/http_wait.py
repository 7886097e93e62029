"""Waiting for a subprocess's HTTP endpoint to answer, failing with its log when it dies first."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def wait_http(url: str, *, timeout_s: float, proc: subprocess.Popen[bytes] | None = None,
              log_path: Path | None = None, ok: Callable[[httpx.Response], bool] | None = None,
              interval_s: float = 0.3) -> None:
    """Poll `url` until `ok(response)` (default: status 200); raise with the log tail otherwise."""
    def tail() -> str:
        return log_path.read_text(errors="replace")[-2000:] if log_path is not None else ""

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} answered: {tail()}")
        try:
            r = httpx.get(url, timeout=2)
            if (ok or (lambda resp: resp.status_code == 200))(r):
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    raise AssertionError(f"{url} did not answer within {timeout_s:.0f} s: {tail()}")
