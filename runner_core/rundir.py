"""One owner per run directory.

A process that runs in a directory holds an exclusive `flock` on `<run dir>/.lock` for the run's
whole life. The kernel drops the lock when the process ends, however it ends (kill -9
included), so a lock is never left stale. A second process is refused with the owner's pid. A
fresh run whose directory was named by the default timestamp pattern and is already taken (two
runs started in the same second) moves to a free sibling (`<name>_2`, `<name>_3`, ...). A fresh
run never writes into a directory that already holds anything.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from runner_core.errors import ConfigError, StorageError

LOCK_FILE = ".lock"
# what interrupted atomic writes leave behind (see `checkpoint.save_atomic`, `write_json_atomic`)
TEMP_PATTERNS = (".*.tmp", "checkpoints/.*.tmp", ".summary.json.*")
MAX_SIBLINGS = 1000


class RunDir:
    """A run directory this process owns until `release()` (or until it exits)."""

    def __init__(self, path: Path, fd: int, fresh: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self.fresh = fresh  # a new run: everything in the directory is this process's

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def discard(self) -> None:
        """Undo a claim that never became a run: the lock file, Hydra's config copy, and the
        directory (and its date folder) where that leaves them empty."""
        self.release()
        if self.fresh:
            _discard_new(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"


def claim(path: Path, *, fresh: bool, rename_if_taken: bool = False) -> RunDir:
    """Take ownership of `path` for this process.

    fresh: a new run. The directory must be empty (or not exist yet). If it is taken (it holds
    something, or another process owns it): with `rename_if_taken` the first free sibling
    `<path>_N` is used instead, otherwise the run is refused.
    not fresh (resume): the directory must exist; it is refused while another process owns it.
    Stale temporary files of interrupted writes are removed once the lock is held."""
    path = path.absolute()
    if not fresh:
        if not path.is_dir():
            raise ConfigError(f"Run directory '{path}' does not exist.")
        run_dir = _lock(path, fresh=False)
        if run_dir is None:
            raise ConfigError(_in_use(path))
        remove_stale_temp_files(path)
        return run_dir
    candidates = [path]
    if rename_if_taken:
        candidates += [path.with_name(f"{path.name}_{i}") for i in range(2, MAX_SIBLINGS)]
    for candidate in candidates:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                storage_message(exc, f"Cannot create the run directory '{candidate}'")
            ) from None
        run_dir = _lock(candidate, fresh=True)
        if run_dir is None:
            if rename_if_taken:
                continue
            raise ConfigError(_in_use(candidate))
        held = sorted(p.name for p in candidate.iterdir() if p.name != LOCK_FILE)
        if not held:
            return run_dir
        run_dir.release()
        if not rename_if_taken:
            raise ConfigError(
                f"Run directory '{candidate}' already holds a run or other files "
                f"({', '.join(held[:5])}{', ...' if len(held) > 5 else ''}); a new run never "
                "writes into it. Continue that run with resume=<dir>, start a new run from one "
                "of its checkpoints with init_from=<dir>/checkpoints/<file>.pt, or pick an empty "
                "hydra.run.dir."
            )
    raise ConfigError(f"No free run directory next to '{path}' (tried {MAX_SIBLINGS}).")


def _lock(path: Path, fresh: bool) -> RunDir | None:
    """The lock on `path`, or None while another process holds it."""
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(
            storage_message(exc, f"Cannot write to the run directory '{path}'")
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise StorageError(
            storage_message(exc, f"Cannot lock the run directory '{path}'")
        ) from None
    with contextlib.suppress(OSError):  # the owner's pid, for the message a second process gets
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return RunDir(path, fd, fresh)


def owner_pid(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return str(int((path / LOCK_FILE).read_text().split()[0]))
    return "?"


def _in_use(path: Path) -> str:
    return (
        f"Run directory '{path}' is in use by another process (pid {owner_pid(path)}). One "
        "process at a time owns a run directory: two would interleave their metrics and overwrite "
        "each other's checkpoints. Wait for it to finish, or stop it (its checkpoint lets you "
        "resume=<dir> afterwards)."
    )


def remove_stale_temp_files(path: Path) -> list[Path]:
    """Delete what interrupted atomic writes left (only call while holding the lock)."""
    removed = []
    for pattern in TEMP_PATTERNS:
        for tmp in path.glob(pattern):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _discard_new(path: Path) -> None:
    with contextlib.suppress(OSError):
        (path / LOCK_FILE).unlink()
    hydra_dir = path / ".hydra"
    if hydra_dir.is_dir():
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            with contextlib.suppress(OSError):
                (hydra_dir / name).unlink()
        with contextlib.suppress(OSError):
            hydra_dir.rmdir()
    for folder in (path, path.parent):  # rmdir only removes empty folders
        with contextlib.suppress(OSError):
            folder.rmdir()


STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}
)


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def storage_message(exc: OSError, what: str) -> str:
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in what else ""
    reason = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: "Free space on that disk",
        errno.EDQUOT: "Free space within your disk quota",
        errno.EROFS: "The file system is read-only: pick a writable location (hydra.run.dir=...)",
        errno.EACCES: "Check the permissions of that location",
        errno.EPERM: "Check the permissions of that location",
    }.get(exc.errno or 0, "Check the disk")
    return f"{what}{where}: {reason}. {hint}."
