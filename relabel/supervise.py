"""Run a command and everything it starts as one unit that stops on SIGTERM, SIGINT (Ctrl-C) or SIGHUP within
a bounded time: the command runs in its own session, its descendants are remembered while it runs, and on a
signal they all get SIGINT, then SIGKILL for any still running after ``grace_s``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence

import psutil

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _descendants(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def running(process: psutil.Process) -> bool:
    """Whether the process still runs (a zombie, dead and waiting for its parent to reap it, does not)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(processes: Sequence[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until none of ``processes`` runs or ``timeout_s`` passed; the ones still running."""
    deadline = time.monotonic() + timeout_s
    alive = [p for p in processes if running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if running(p)]
    return alive


def _signal(processes: Sequence[psutil.Process], group: int | None, signum: int) -> None:
    if group is not None:
        try:
            os.killpg(group, signum)
        except ProcessLookupError:
            pass
    for process in processes:
        try:
            process.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


def stop_tree(processes: Sequence[psutil.Process], group: int | None, grace_s: float) -> list[psutil.Process]:
    """SIGINT to ``processes`` and to the process group ``group``, SIGKILL to what still runs after ``grace_s``;
    returns the processes that had to be killed."""
    _signal(processes, group, signal.SIGINT)
    alive = wait_gone(processes, grace_s)
    if alive:
        _signal(alive, group, signal.SIGKILL)
        wait_gone(alive, 2.0)
    return alive


def run_supervised(
    argv: Sequence[str], *, grace_s: float = 4.0, poll_s: float = 0.5, env: dict[str, str] | None = None
) -> int:
    """Run ``argv`` until it exits (its exit code) or this process gets a stop signal (0 once the whole tree
    is gone). Descendants that left the command's process group are stopped too."""
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in STOP_SIGNALS}
    child = subprocess.Popen(list(argv), start_new_session=True, env=env)
    root = psutil.Process(child.pid)
    seen: dict[int, psutil.Process] = {}
    try:
        while not received and child.poll() is None:
            for process in _descendants(root):
                seen.setdefault(process.pid, process)
            time.sleep(poll_s)
        for process in _descendants(root):
            seen.setdefault(process.pid, process)
        stop_tree([p for p in seen.values() if running(p)], child.pid, grace_s)
        child.wait()
        return 0 if received else child.returncode
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
