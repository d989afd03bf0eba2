"""Run ``lite-rm serve`` as a local helper process (a desktop app, a benchmark, a test) on loopback.

Standard library only: it starts the server on a free 127.0.0.1 port, waits until ``/health`` answers
200, and stops it with SIGTERM (which lets the server finish the requests in flight).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LocalServer:
    """A ``lite-rm serve`` process and its base URL (``http://127.0.0.1:PORT``)."""

    process: subprocess.Popen[bytes]
    url: str

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (in-flight requests finish), then a kill if it has not exited within ``timeout``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as answer:  # noqa: S310 - loopback URL we built
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_local_server(bundle: str | Path, *args: str, api_key: str | None = None, timeout: float = 30.0,
                       capture_output: bool = False) -> LocalServer:
    """Start ``lite-rm serve BUNDLE`` on a free loopback port and wait until it is ready.

    Args:
        bundle: the bundle folder.
        *args: more ``lite-rm serve`` flags (``--threads 1``, ``--max-rows 64``, ...).
        api_key: the key clients must send (``None``: none; the server is on loopback only).
        timeout: seconds to wait for ``/health`` to answer 200.
        capture_output: keep the server's stdout and stderr in ``process.stdout`` (else inherited).

    Raises:
        RuntimeError: the server exited or was not ready within ``timeout`` (its output in the message).
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from lite_rm.cli import main; main()", "serve", str(bundle), "--host", "127.0.0.1",
         "--port", str(port), *args],
        env={**os.environ, "LITE_RM_API_KEY": api_key or ""},
        stdout=subprocess.PIPE if capture_output else None, stderr=subprocess.STDOUT if capture_output else None)
    server = LocalServer(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"lite-rm serve exited with status {process.returncode}: {output.strip()[-2000:]}")
        if _healthy(server.url):
            return server
        time.sleep(0.2)
    server.stop(timeout=5)
    raise RuntimeError(f"lite-rm serve was not ready within {timeout:.0f} s")
