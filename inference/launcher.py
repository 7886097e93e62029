"""Start the vLLM CPU server as a subprocess: the local stand-in for the Cloud Run sidecar.

`LocalEngine` picks a free port, starts `python -m vllm.entrypoints.openai.api_server` with the
flags rendered by `EngineConfig`, prints progress while it loads, waits for `/health`, warms it
up (the first request on CPU is many times slower than the rest), and stops the whole process
group on exit. The child also gets a parent-death signal, so it cannot outlive a killed parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

from inference.contract import CategorySpec, build_prompts
from inference.engine_config import EngineConfig, cpu_env

Progress = Callable[[str], None]
_PR_SET_PDEATHSIG = 1


class EngineStartError(RuntimeError):
    """The engine exited or did not become healthy in time; the message carries its log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class LocalEngine:
    def __init__(self, config: EngineConfig, *, log_path: Path, port: int = 0, host: str = "127.0.0.1",
                 progress: Progress | None = None, python: str = sys.executable) -> None:
        self.config = config
        self.host = host
        self.port = port or free_port()
        self.log_path = log_path
        self.python = python
        self._say = progress or (lambda m: print(m, file=sys.stderr, flush=True))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 600.0) -> str:
        """Start, wait until healthy, warm up; returns the base URL."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server",
               *self.config.args("cpu", host=self.host, port=self.port)]
        dtype = self.config.resolved_dtype("cpu")
        self._say(f"engine: starting vLLM (CPU, {dtype}) on {self.url} with {self.config.served_model_name}; "
                  f"log in {self.log_path}")
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=cpu_env(),
                                         preexec_fn=_child_setup)
        finally:
            log.close()
        self._wait_healthy(timeout_s)
        self.warm_up()
        return self.url

    def _wait_healthy(self, timeout_s: float) -> None:
        t0 = time.monotonic()
        last_say = t0
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise EngineStartError(f"vLLM exited with code {self.proc.returncode}; log tail:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    self._say(f"engine: healthy after {time.monotonic() - t0:.0f} s")
                    return
            except httpx.HTTPError:
                pass
            now = time.monotonic()
            if now - t0 > timeout_s:
                self.stop()
                raise EngineStartError(f"vLLM not healthy after {timeout_s:.0f} s; log tail:\n{self.tail()}")
            if now - last_say >= 10:
                last_say = now
                self._say(f"engine: loading ({now - t0:.0f} s) … {self.tail(1).strip()[-120:]}")
            time.sleep(0.5)

    def warm_up(self) -> None:
        """Send one judgement-shaped batch so the first customer request is not the slow one."""
        t0 = time.monotonic()
        cats = [CategorySpec("warmup", "ウォームアップ", "これはエンジンの準備運転です。")] * 4
        body = {"model": self.config.served_model_name, "prompt": build_prompts("準備運転のテキストです。", cats),
                "max_tokens": 1, "logprobs": 20, "temperature": 0.0}
        r = httpx.post(f"{self.url}/v1/completions", json=body, timeout=300.0)
        if r.status_code != 200:
            raise EngineStartError(f"warm-up request failed: HTTP {r.status_code} {r.text[:300]}")
        self._say(f"engine: warmed up in {time.monotonic() - t0:.1f} s")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 20.0) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
        except ProcessLookupError:
            pass

    def __enter__(self) -> LocalEngine:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
