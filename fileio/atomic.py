"""One atomic write for every file the project keeps: checkpoints, caches, metadata, reports, packs, wavs.

A file is written to a temporary file in its own folder (``.<name>.<random>.tmp``, or a name the caller
gives), flushed and fsynced, then renamed over the final path with ``os.replace``, and the folder is fsynced
so that the rename survives a crash too (where the platform allows opening a folder; Windows does not).
A process killed at any moment therefore leaves either the previous file or the new one, never a torn one;
what it can leave is the temporary file, which its owner's next run removes or overwrites. docs/training.md's
promise that a kill loses nothing holds as far as this module is right, which is why there is one of it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def fsync_folder(folder: str | Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where a folder cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permissions a plain ``open(path, "w")`` would leave: the existing file's, else 0o666 less the umask
    (``tempfile.mkstemp`` creates 0o600 files, which other users of a shared machine could not read)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def move_into_place(source: str | Path, path: str | Path) -> None:
    """Rename ``source`` (a finished file or folder in the same file system) over ``path``, durably."""
    os.replace(source, path)
    fsync_folder(Path(path).parent)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp", temporary: str | Path | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that want a file name (soundfile, a memory map, a header
    written last); when the block ends the file is fsynced and moved over ``path``; on error it is removed.

    ``suffix`` keeps an extension a writer needs (soundfile infers the format from it); ``temporary`` names
    the temporary file outright where a reader must recognise an unfinished one (``<video>.pack.tmp``).
    """
    path = Path(path)
    if temporary is None:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.fchmod(fd, _mode_for(path))
        os.close(fd)
        temporary = name
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb") as fh:
            os.fsync(fh.fileno())
        move_into_place(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """``open(path, mode)`` whose content replaces ``path`` only once the block has written all of it."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _mode_for(path))
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        move_into_place(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """``path`` holds ``text`` (UTF-8), atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | Path, obj, indent: int = 1) -> Path:
    """``path`` holds ``obj`` as JSON with a final newline, atomically."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n")
