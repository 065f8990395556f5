"""Writing a file the user named (``--out``): every check first, then an atomic write.

Why: ``mixplan export``, ``export-runs`` and ``predict`` write wherever ``--out`` says, and a
wrong ``--out`` must destroy nothing: never the database the command reads (nor its
write-ahead log, lock or gate file, compared after resolving links), never an existing file
unless the caller allows it (``--force``), never a directory, device or pipe. Each refusal is
a :class:`~engine.errors.ValidationError` naming the path and the fix, raised before anything
is written. The content goes to a hidden temporary file in the target's folder and is then
renamed into place (or hard-linked, which refuses to replace a file another process created
meanwhile), so a reader or a crash never meets half a file; the temporary file goes in every
case.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.errors import ValidationError

_HOST = socket.gethostname().replace("/", "_")


def temp_path(path: Path, tag: str) -> Path:
    """A hidden file beside ``path`` for building it: ``.<name>.<tag>-<host>-<pid>-<random>``
    (host and pid let :func:`remove_stale_temps` tell a dead writer's leftovers from a live one's)."""
    return path.with_name(f".{path.name}.{tag}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}")


def remove_stale_temps(path: Path, tag: str, suffixes: Sequence[str] = ()) -> list[Path]:
    """Delete the :func:`temp_path` files (and ``<file><suffix>`` side files) of ``path`` whose
    writer is gone: a process of this host that no longer runs (``kill -9`` skips every
    clean-up). Those of a live process, or of another host sharing the folder, stay. Returns
    the files removed."""
    prefix = f".{path.name}.{tag}-"
    removed: list[Path] = []
    try:
        entries = [e for e in os.scandir(path.parent if str(path.parent) else ".") if e.name.startswith(prefix)]
    except OSError:
        return removed
    for e in entries:
        rest = e.name[len(prefix):]
        for suffix in suffixes:
            rest = rest.removesuffix(suffix)
        host, _, pid = rest.rpartition("-")[0].rpartition("-")
        if host != _HOST or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True

#: The files that make up a database ``X``: X itself and those the store keeps beside it.
DB_SIDE_SUFFIXES = ("", ".wal", ".lock", ".gate")


def database_files(db: str | Path) -> list[Path]:
    """The database file ``db`` and its side files (write-ahead log, lock, gate)."""
    db = Path(db)
    return [db.with_name(db.name + s) for s in DB_SIDE_SUFFIXES]


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: not the same as a real file
        return False
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_out_path(path: str | Path, *, overwrite: bool, protect: Sequence[str | Path] = (),
                   option: str = "--out", example: str = "out.csv") -> Path:
    """Raise :class:`ValidationError` unless ``path`` may be written: not one of ``protect``
    (see :func:`database_files`), not a directory or other non-regular file, not an existing
    file unless ``overwrite``, its folder (if it exists) a folder. Returns ``path``."""
    p = Path(path)
    for q in protect:
        if _same_file(p, Path(q)):
            raise ValidationError(f"{option} {p} is the database this command reads (or one of its files); "
                                  "writing there would destroy it.", fix=f"give {option} another file name.")
    if p.is_dir():
        raise ValidationError(f"{option} {p} is a folder, not a file.", fix=f"give a file name, e.g. {p / example}.")
    if p.exists() or p.is_symlink():
        if not p.is_file():
            raise ValidationError(f"{option} {p} exists and is not a regular file (a device, pipe or socket).",
                                  fix=f"give {option} the path of a regular file.")
        if not overwrite:
            raise ValidationError(f"{option} {p} exists already; it is not overwritten.",
                                  fix="pass --force to overwrite it, or choose another file name.")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValidationError(f"{option} {p}: {parent} is a file, not a folder.",
                                      fix=f"give {option} a path inside a folder.")
            break
    return p


def write_atomic(path: str | Path, data: bytes | str, *, durable: bool = False, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` through a :func:`temp_path` file and a rename, so a reader never
    meets half a file and a crash leaves the old one. ``durable``: fsync before the rename (a
    spool record or a runner's input that must survive a power cut; a cache or progress file
    need not). ``mode``: the file's permissions (a temp file is created 0600). The temp file is
    removed if anything fails; the error is raised. Returns ``path``."""
    p = Path(path)
    tmp = temp_path(p, "tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def write_out_file(path: str | Path, write: Callable[[Path], None], *, overwrite: bool,
                   protect: Sequence[str | Path] = (), option: str = "--out", example: str = "out.csv") -> Path:
    """Check ``path`` (:func:`check_out_path`), then call ``write(tmp)`` on a temporary file
    beside it and move that into place. Missing folders are created. Without ``overwrite`` a
    file that appears at ``path`` meanwhile is not replaced. Errors of the file system (no
    permission, a read-only or virtual file system such as /proc, a full disk) become a
    :class:`ValidationError` naming the path. Returns ``path``."""
    p = check_out_path(path, overwrite=overwrite, protect=protect, option=option, example=example)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"{option} {p}: cannot create the folder {p.parent} ({exc.strerror or exc}).",
                              fix="give a path in a folder you can write to.") from exc
    remove_stale_temps(p, "tmp")
    tmp = temp_path(p, "tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)
            except FileExistsError:
                raise ValidationError(f"{option} {p} appeared while this command ran; it is not overwritten.",
                                      fix="pass --force to overwrite it, or choose another file name.") from None
            except OSError:  # a file system without hard links: check, then rename
                if p.exists():
                    raise ValidationError(f"{option} {p} exists already; it is not overwritten.",
                                          fix="pass --force to overwrite it, or choose another file name.") from None
                os.rename(tmp, p)
    except OSError as exc:
        raise ValidationError(f"{option} {p}: cannot write it ({exc.strerror or exc}).",
                              fix="give a path in a folder you can write to.") from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return p
