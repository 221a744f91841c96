"""Output files: written atomically, never over an input, checked before any work.

Every file evplanner writes goes through :func:`atomic_write` (several at once:
:func:`write_files`): the content is written
to a temporary file in the target's own directory, flushed to disk, then renamed over
the target with :func:`os.replace` (atomic on POSIX and Windows within a file
system). A reader sees the old file or the new one, never a half-written one; a
failure (an exception, a full disk, Ctrl-C) leaves the old file as it was. The target
is never deleted first.

:func:`check_outputs` runs before the work starts, so that a long solve does not end
in "directory not found" or in overwriting the input it has just read.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

__all__ = ["atomic_write", "check_outputs", "write_files"]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- atomic


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; the rename is durable there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (network, FUSE) refuse fsync on a directory
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Write ``path`` through a temporary file renamed over it on success.

    Parameters
    ----------
    path : str or Path
        The file to (over)write. A symbolic link is followed: its target is replaced
        and the link kept.

    Yields
    ------
    pathlib.Path
        Where to write: a file of the same name (so that writers which choose the
        format from the extension still work) inside a private temporary directory
        next to ``path`` (so that the final rename stays within one file system).
        It does not exist yet.

    Raises
    ------
    FileNotFoundError
        If the body leaves no file at the yielded path.

    Notes
    -----
    On leaving the block normally, the file is flushed to disk (``fsync``), renamed
    over ``path`` with :func:`os.replace` and the directory entry is flushed. On an
    exception the temporary directory is removed and ``path`` is left untouched; the
    exception propagates.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_write(target) as tmp:
    ...     _ = tmp.write_text("new")
    >>> target.read_text()
    'new'
    >>> try:
    ...     with atomic_write(target) as tmp:
    ...         _ = tmp.write_text("half")
    ...         raise RuntimeError("disk full")
    ... except RuntimeError:
    ...     pass
    >>> target.read_text()
    'new'
    """
    target = Path(os.path.realpath(path))
    workdir = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    )
    tmp = workdir / target.name
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written for {path}")
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def write_files(files: Mapping[str | Path, bytes]) -> list[Path]:
    """Write several files all or nothing, each through :func:`atomic_write`.

    Every file is written in full to its temporary file first; only when all of
    them are written are they renamed over their targets, so a failure while
    writing (a full disk, an unwritable folder) leaves every target as it was.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> [p.name for p in write_files({folder / "a.txt": b"A", folder / "b.txt": b"B"})]
    ['a.txt', 'b.txt']
    """
    with ExitStack() as stack:
        for path, data in files.items():
            stack.enter_context(atomic_write(path)).write_bytes(data)
    return [Path(p) for p in files]


# --------------------------------------------------------------------------- checks


def _paths(value) -> list[Path]:
    """The files an option names: a path, a glob, or a sequence of them."""
    if value is None:
        return []
    specs = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    out: list[Path] = []
    for spec in specs:
        text = os.fspath(spec)
        matched = sorted(glob.glob(text)) if glob.has_magic(text) else []
        if matched:
            out.extend(Path(m) for m in matched)
        else:  # a plain name, or a glob matching nothing: compare the name itself
            out.append(Path(text))
    return out


def _check_writable(name: str, path: Path) -> None:
    """Create (and remove) a file where ``path`` will go: the only test that holds
    for root, read-only mounts and pseudo file systems (``/proc``) alike."""
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{name} {path}: cannot write in {path.parent} "
                         f"({err.strerror})") from None  # fmt: skip
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{name} {path}: the file is not writable")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: symlinks resolved, hard links too."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare resolved names
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(
            os.path.realpath(b)
        )


def check_outputs(
    outputs: Mapping[str, str | Path | None],
    inputs: Mapping[str, str | Path | Sequence[str | Path] | None] | None = None,
) -> dict[str, Path]:
    """Refuse output paths that would overwrite an input or each other, or fail.

    Call it once, before any work, with every file the command will write and read.

    Parameters
    ----------
    outputs : mapping of str to path or None
        Option name (as the user wrote it, e.g. ``"--out"``) -> the file it writes;
        ``None`` entries are skipped.
    inputs : mapping of str to path, glob, sequence of paths, or None
        Option name -> the file(s) it reads (globs are expanded). Pass the bundled
        file's path for a default input, so that it is protected too.

    Returns
    -------
    dict of str to pathlib.Path
        The outputs that were given, as paths.

    Raises
    ------
    ValueError
        Naming both options, if an output is also an input or another output (the
        same file after resolving symbolic links; for existing files, the same
        inode, so hard links count); naming the option, if the output's directory
        does not exist or is not writable, or the output is a directory.

    Examples
    --------
    >>> check_outputs({"--out": "v.csv"}, {"--input": "v.csv"})
    Traceback (most recent call last):
    ...
    ValueError: --out v.csv is also the input --input v.csv: writing it would \
destroy the input; choose another output file
    >>> check_outputs({"--out": "sites.csv", "--metrics": "sites.csv"})
    Traceback (most recent call last):
    ...
    ValueError: --metrics sites.csv is also the output --out sites.csv: choose \
another file for one of them
    """
    given = {name: Path(p) for name, p in outputs.items() if p is not None}
    read = [(name, p) for name, spec in (inputs or {}).items() for p in _paths(spec)]
    seen: list[tuple[str, Path]] = []
    for name, path in given.items():
        parent = path.parent
        if not parent.exists():
            raise ValueError(f"{name} {path}: directory {parent} does not exist")
        if not parent.is_dir():
            raise ValueError(f"{name} {path}: {parent} is not a directory")
        if path.is_dir():
            raise ValueError(f"{name} {path}: expected a file name, got a directory")
        _check_writable(name, path)
        for in_name, in_path in read:
            if _same_file(path, in_path):
                raise ValueError(
                    f"{name} {path} is also the input {in_name} {in_path}: writing "
                    "it would destroy the input; choose another output file"
                )
        for other_name, other in seen:
            if _same_file(path, other):
                raise ValueError(
                    f"{name} {path} is also the output {other_name} {other}: choose "
                    "another file for one of them"
                )
        seen.append((name, path))
    return given
