"""One session per run directory: an exclusive lock on <run>/.lock, held until the last process
of the session ends.

Two sessions on one run would both write episodes, rows and checkpoints (one episode lost, a
duplicated row, a learner tripping over the other's temporary file). The lock is flock(2) on
<run>/.lock, taken by the actor before anything moves. Its open file is handed to the learner
process (`for_child`), so the lock lasts while either of them lives: a learner still writing
its last checkpoint after its actor was killed keeps the run, and a session started meanwhile
is refused. The kernel drops the lock when the last of them ends, however it ends: a lock left
by a dead process never blocks. The file's text says who holds it (pids, host, start time),
for the message that refuses a second session; it is only ever read for that message.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import pathlib
import socket
from multiprocessing import reduction

from slac_robot.storage import named

LOCK_FILE = ".lock"


class RunDirectoryInUse(RuntimeError):
    """Another session holds the run directory; the message names its processes."""


class RunLock:
    """The actor's hold on a run directory (see the module docstring).

    `acquire` takes it or raises RunDirectoryInUse; `record_learner(pid)` adds the learner's pid
    to what the file says; `for_child()` is what the learner process gets to share the hold;
    `release()` closes this process's descriptor (the lock lasts while the learner holds its own)."""

    def __init__(self, path: pathlib.Path, fd: int, owner: dict[str, str]):
        self.path, self._fd, self._owner = path, fd, owner

    @classmethod
    def acquire(cls, run_dir: pathlib.Path, command: str = "slac-robot train") -> "RunLock":
        """Locks run_dir (which must exist). Raises RunDirectoryInUse when a live session holds
        it, and an OSError naming the lock file when it cannot be written (read-only, full)."""
        path = pathlib.Path(run_dir) / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise named(error, path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirectoryInUse(_refusal(pathlib.Path(run_dir), _read_owner(path))) from None
        owner = {
            "pid": str(os.getpid()),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": command,
        }
        lock = cls(path, fd, owner)
        try:
            lock._write_owner()
        except OSError:
            lock.release()
            raise
        return lock

    def record_learner(self, pid: int) -> None:
        """Adds the learner's pid to the file (the holder after its actor ended)."""
        self._owner["learner_pid"] = str(pid)
        self._write_owner()

    def for_child(self) -> "InheritedLock":
        """The hold, for a spawned child process (an argument of multiprocessing.Process)."""
        return InheritedLock(self._fd)

    def release(self) -> None:
        """Closes this process's descriptor. No LOCK_UN: that would also release the learner's
        hold, which shares this open file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write_owner(self) -> None:
        text = "".join(f"{key}={value}\n" for key, value in self._owner.items()).encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text, 0)
        except OSError as error:
            raise named(error, self.path) from None


class InheritedLock:
    """A child's share of the run lock: pickled, it carries a duplicate of the locked descriptor
    into a spawned process (multiprocessing passes it at spawn), which keeps it open until it ends."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        # Called while multiprocessing pickles the child's arguments: DupFd then hands the
        # descriptor to the process being spawned.
        return (_adopt, (reduction.DupFd(self.fd),))


def _adopt(duplicate) -> InheritedLock:
    return InheritedLock(duplicate.detach())


def _read_owner(path: pathlib.Path) -> dict[str, str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return True


def _refusal(run_dir: pathlib.Path, owner: dict[str, str]) -> str:
    """The one line that refuses a second session: who holds the run, and what to do."""
    fix = "wait for it to end, or stop it (Ctrl-C, or kill PID), then resume"
    host, here = owner.get("host"), socket.gethostname()
    pids = {role: int(owner[key]) for role, key in (("actor", "pid"), ("learner", "learner_pid"))
            if owner.get(key, "").isdigit()}
    if not pids:
        return f"run directory {run_dir} is in use by another slac-robot session; {fix}"
    since = f" since {owner['since']}" if "since" in owner else ""
    if host and host != here:
        listed = ", ".join(f"{role} pid {pid}" for role, pid in pids.items())
        return f"run directory {run_dir} is in use{since} by a slac-robot session on host {host} ({listed}); {fix}"
    actor, learner = pids.get("actor"), pids.get("learner")
    if actor is not None and _alive(actor):
        held = f"its session's actor, pid {actor}" + (f" (learner pid {learner})" if learner else "")
    elif learner is not None:
        held = (f"the learner process pid {learner}, which is writing its last checkpoint (its actor, "
                f"pid {actor}, has ended)")
    else:
        held = f"a process of the session started by pid {actor}"
    return f"run directory {run_dir} is in use{since}, held by {held}; {fix}"
