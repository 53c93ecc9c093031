"""The peers' server processes: started with their output in a log file, stopped by pid.

Each process gets its own session and process group, so stopping it also reaches its
children (Miniflare's workerd) without touching anything else on the machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

STOP_SECONDS = 30.0


class Process:
    """``command`` running with stdout and stderr in ``log_path``."""

    def __init__(
        self,
        command: list[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.command = command
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=None if env is None else {**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first match of ``pattern`` in the log; ``RuntimeError`` if the process dies or times out."""
        return self.wait_until(lambda: re.search(pattern, self.log()), timeout, f"log line {pattern!r}")

    def wait_until(self, probe: Callable[[], object], timeout: float, what: str):
        """Poll ``probe`` until it returns something true (returned), the process dies, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            found = probe()
            if found:
                return found
            time.sleep(0.05)
        self.stop()
        program = Path(self.command[0]).name
        raise RuntimeError(f"{program} did not show {what}; its log:\n{self.log()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM the process's group, SIGKILL it after a grace period; the exit code.

        The leader is waited for without being reaped, so its group id stays ours while the
        rest of the group (children that outlive it) is killed; then it is reaped.
        """
        if self.process.returncode is None:
            if not self._exited(0):
                os.killpg(self.process.pid, signal.SIGTERM)
                if not self._exited(STOP_SECONDS):
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self._exited(STOP_SECONDS)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()

    def _exited(self, timeout: float) -> bool:
        """Whether the leader has exited within ``timeout`` seconds, leaving it unreaped."""
        deadline = time.monotonic() + timeout
        while True:
            if os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
