"""The real Google Pub/Sub emulator as a test subprocess: start, stop, freeze, restart.

`gcloud beta emulators pubsub start` runs a Java server as a child of gcloud's Python; the
emulator is stopped (or frozen with SIGSTOP, to make it hang rather than refuse) through that
Java process's PID, found by its port, as the emulator's own docs advise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.http_wait import wait_http

PROJECT = "guardrail-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PubSubEmulator:
    def __init__(self, log_path: Path, port: int = 0) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise RuntimeError("gcloud is not installed: the Pub/Sub emulator (`gcloud beta emulators pubsub`) "
                               "is needed by these tests; install the Google Cloud CLI with its pubsub-emulator "
                               "component")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [gcloud, "beta", "emulators", "pubsub", "start", f"--project={PROJECT}", f"--host-port={self.host}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(f"http://{self.host}/", timeout_s=timeout_s, proc=self.proc, log_path=self.log_path,
                      interval_s=0.5)
        except AssertionError as exc:
            raise RuntimeError(f"Pub/Sub emulator did not start: {exc}") from exc

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    def java_pid(self) -> int:
        out = subprocess.run(["pgrep", "-f", f"java.*--port={self.port}"], capture_output=True, text=True).stdout
        pids = [int(p) for p in out.split()]
        if not pids:
            raise RuntimeError(f"no emulator java process on port {self.port}")
        return pids[0]

    def freeze(self) -> None:
        """The emulator stops answering (connections hang) but keeps its state."""
        os.kill(self.java_pid(), signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.java_pid(), signal.SIGCONT)

    def stop(self) -> None:
        """Kill the emulator (its topics, subscriptions and messages are gone)."""
        try:
            pid = self.java_pid()
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except (RuntimeError, ProcessLookupError):
            pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the port must be free before a restart on it
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)
