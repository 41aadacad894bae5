"""Where sandboxes keep their files, and how the folders of killed sandboxes are cleaned up.

Every sandbox folder lives under one parent in the temporary directory (``hitpaw-sandbox-<uid>``)
and its name says which process owns it: ``<pid>-<start>-<random>``, where ``<start>`` is the
process's start time (clock ticks since boot, from ``/proc``; 0 where unknown). A folder is stale
when that process is gone, or when its pid now belongs to a process that started at another time
(a reused pid). A sandbox that stops removes its own folder; one killed with SIGKILL cannot, so
each new sandbox removes the stale folders it finds before it creates its own.

The owner is encoded in the folder's name rather than in a file inside it, so that a folder never
exists without its owner being known (a sandbox starting at the same time cannot mistake a folder
being created for an abandoned one).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(?P<pid>[1-9][0-9]{0,9})-(?P<start>[0-9]{1,20})-[A-Za-z0-9_]+$")


def parent_dir() -> Path:
    """The common parent of every sandbox folder of this user."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    suffix = str(uid) if uid is not None else "user"
    return Path(tempfile.gettempdir()) / f"hitpaw-sandbox-{suffix}"


def process_start_ticks(pid: int) -> int:
    """When process ``pid`` started, in clock ticks since boot (Linux); 0 when unknown."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        # The command name (2nd field) is in parentheses and may hold spaces: split after it.
        return int(raw.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _is_alive(pid: int, start: int) -> bool:
    """Whether the process that owns a folder named with ``pid`` and ``start`` still runs."""
    if os.name == "nt":
        return True  # os.kill would end the process there: never remove a folder on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # a process of another user has this pid: alive, but maybe not the owner
    except OSError:
        return True  # cannot tell: keep the folder
    if start:
        now_start = process_start_ticks(pid)
        if now_start and now_start != start:
            return False  # the pid was reused by a process that started later
    return True


def owner_pid(path: Path) -> int | None:
    """The pid in a sandbox folder's name, or None when the name is not a sandbox folder's."""
    match = _NAME.match(path.name)
    return int(match["pid"]) if match else None


def is_stale(path: Path) -> bool:
    """Whether ``path`` is a sandbox folder whose owning process is gone."""
    match = _NAME.match(path.name)
    if match is None:
        return False
    return not _is_alive(int(match["pid"]), int(match["start"]))


def _usable_parent() -> Path | None:
    """The common parent, created if needed; None when it is not safely ours (a symlink, or
    another user's directory), in which case sandboxes fall back to a folder of their own."""
    parent = parent_dir()
    try:
        parent.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(parent)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return None
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return None
    return parent


def remove_stale_dirs() -> list[Path]:
    """Remove the folders of sandboxes whose process is gone. Returns the folders removed.

    Never touches a folder whose owner is alive, nor anything whose name is not a sandbox folder's.
    """
    parent = _usable_parent()
    if parent is None:
        return []
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        if entry.is_symlink() or not entry.is_dir() or not is_stale(entry):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry)
    if removed:
        log.info("sandbox: removed %d folder(s) left by sandboxes that were killed", len(removed))
    return removed


def make_owned_dir() -> Path:
    """A new, empty folder owned by this process, under the common parent.

    Stale folders are removed first. When the common parent cannot be used safely, the folder is
    an ordinary temporary one (removed at stop, but not by a later sandbox if this one is killed).
    """
    remove_stale_dirs()
    parent = _usable_parent()
    if parent is None:
        return Path(tempfile.mkdtemp(prefix="hitpaw-sandbox-"))
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{pid}-{process_start_ticks(pid)}-", dir=parent))
