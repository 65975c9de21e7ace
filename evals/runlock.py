"""One writer per run folder, and child processes that die with their parent.

Every command that writes a run folder (`tbrm eval`, `tbrm train`, `tbrm reproduce`) holds `run_lock(folder)` while
it runs: an exclusive `flock` on FOLDER/.tbrm.lock, a file holding the writer's PID and command. A second writer
gets `RunLockedError` naming that PID instead of interleaving its files with the first (two trainers would delete
each other's `.checkpoint-N.tmp` and duplicate rows of metrics.jsonl). The kernel drops a `flock` when its process
dies, however it dies, so the lock of a killed writer is taken over by the next one without any clean-up; the file
it leaves only says who held it last. A writer that ends normally removes the file (and the folder, if it made it
and wrote nothing there).

Locks nest by folder: `tbrm reproduce` locks its output folder, and each of its stages (a `tbrm train` or `tbrm
eval` child process) locks its own sub-folder, so a stage left running by a killed reproduce still keeps a rerun's
copy of that stage out. `die_with_parent` keeps such stages from being left: a child started with it is killed by
the kernel when its parent dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

LOCK_NAME = ".tbrm.lock"


class RunLockedError(RuntimeError):
    """Another live process writes this run folder; the message names its PID."""


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return text


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, what: str | None = None) -> Iterator[Path]:
    """Hold the writer's lock of `folder` (created if missing) for the `with` block; `what` names the writer in
    the lock file (default: this process's command line). Raises RunLockedError if another process holds it."""
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # removed again if left empty
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    what = what or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            pid, _, cmd = holder.partition(" ")
            who = f"process {pid} ({cmd})" if pid.isdigit() else "another process"
            raise RunLockedError(f"{folder} is being written by {who}: one writer per run folder. Wait for it to "
                                 f"finish, or stop it{f' (kill {pid})' if pid.isdigit() else ''} and rerun to "
                                 f"resume.") from None
        # The previous holder may have removed the file between our open and our lock: then we locked a file no
        # one else can find, so start again on the one at `path`.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        yield path
    finally:
        # removed while still locked, so no later writer can lock the old file after we let it go
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
        for p in made:  # a writer that failed before writing anything (bad input) leaves no empty folder
            try:
                p.rmdir()
            except OSError:
                break


def _prctl():
    """libc's prctl, or None where there is none (not Linux/glibc)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def kill_with_parent(parent_pid: int, prctl=None) -> None:
    """Called in a child process (Linux): ask the kernel to SIGKILL it when its parent dies (PR_SET_PDEATHSIG), and
    exit at once if the parent `parent_pid` is already gone. Elsewhere it does nothing: the parent's own clean-up
    is then the only one."""
    prctl = prctl or _prctl()
    if prctl is None:
        return
    prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the request was in place
        os._exit(1)


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen` that runs `kill_with_parent` in the child; prctl is resolved here, so
    the child between fork and exec only calls it."""
    parent, prctl = os.getpid(), _prctl()
    if prctl is None:
        return lambda: None
    return lambda: kill_with_parent(parent, prctl)
