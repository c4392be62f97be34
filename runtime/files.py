"""Writing results so that a killed run never leaves half a file under a result's name."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def umask() -> int:
    """This process's umask, read without changing it (os.umask sets it to read it, for a
    moment in which another thread's file would get the wrong mode)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        current = os.umask(0o022)
        os.umask(current)
        return current


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`: readers
    and reruns see the old file or the whole new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.chmod(handle, 0o666 & ~umask())  # mkstemp makes 0600; a result gets the mode open() would give
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
