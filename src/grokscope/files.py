"""Files, safely: atomic writes, the one loader of run files, output paths checked before anything is written.

* :func:`atomic_write` writes under a temporary name holding the writer's pid (``.NAME.PID.XXXX.tmp``) and moves
  it into place with ``os.replace``: a file under its real name is always complete. A full disk becomes one line,
  :class:`NoSpace` ("no space left on device ... (needed ~X MB)"); :func:`clean_stale_tmp` removes what writers
  that died (``kill -9``) left behind.
* :func:`load` is the one loader of run files: any failure to read or any content that is not what it should be
  becomes :class:`DamagedFile` ``FILE is damaged: WHAT; HINT``.
* :func:`check_output` is called before anything is computed: the path must be writable, not under a file, in a
  directory (or be one, for ``kind="dir"``).

All errors are :class:`grokscope.checks.ConfigError` (exit code 2 on the command line).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .checks import ConfigError, fmt_bytes

_UMASK = os.umask(0)
os.umask(_UMASK)
_TMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


class DamagedFile(ConfigError):
    """A run file that cannot be read, or holds something else than it should."""

    def __init__(self, path: str | Path, what: str, hint: str = ""):
        self.path, self.what, self.hint = Path(path), what, hint
        super().__init__(f"{path} is damaged: {what}" + (f"; {hint}" if hint else ""))

    def __reduce__(self):  # raised in a worker process (experiment --jobs, Ray): unpickled whole
        return (type(self), (self.path, self.what, self.hint))


class NoSpace(ConfigError):
    """The disk filled up while writing a file (nothing was left half-written)."""


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def load(path: str | Path, read: Callable[[Path], Any], check: Callable[[Any], str | None] | None = None,
         hint: str = "") -> Any:
    """``read(path)``, then ``check(value)`` (a description of what is wrong, or None). A missing file, any error
    while reading, or a failed check becomes :class:`DamagedFile` (``hint`` says what to do about it)."""
    path = Path(path)
    try:
        value = read(path)
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes a reader raise
        if isinstance(e, IsADirectoryError):
            raise DamagedFile(path, "it is a directory, not a file", hint) from None
        if isinstance(e, FileNotFoundError) and not path.exists():
            raise DamagedFile(path, "it is missing", hint) from None
        raise DamagedFile(path, _first_line(e), hint) from None
    if check is not None:
        try:
            problem = check(value)
        except (KeyboardInterrupt, ConfigError):
            raise
        except Exception as e:  # noqa: BLE001 - a check that trips over odd content found damage
            problem = _first_line(e)
        if problem:
            raise DamagedFile(path, problem, hint)
    return value


def _free(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def atomic_write(path: str | Path, write: Callable[[str], None], size: int | None = None) -> None:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path`` atomically. ``size``: the bytes the file
    will take, if known (checked against the free space first). Out of space: :class:`NoSpace`, and no
    temporary file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    free = _free(path.parent)
    if size is not None and free is not None and free < size:
        raise NoSpace(f"no space left on device for {path} (needed ~{fmt_bytes(size)}, {fmt_bytes(free)} free)")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException as e:
        written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, Exception) and not isinstance(e, ConfigError) and _out_of_space(e, path.parent, size, written):
            needed = max(size or 0, written + 1)
            raise NoSpace(f"no space left on device for {path} (needed ~{fmt_bytes(needed)})") from None
        raise


def _out_of_space(e: Exception, directory: Path, size: int | None, written: int) -> bool:
    """Whether a failed write ran out of space: ENOSPC/EDQUOT, or a writer that hides the errno (torch.save's
    "unexpected pos", safetensors' I/O errors) on a disk that has less room left than the file needs."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "No space left" in str(e):
        return True
    free = _free(directory)
    return free is not None and free < max(size or 0, written, 1 << 20)


def is_tmp_name(name: str) -> bool:
    """Whether ``name`` is the name of a temporary file of :func:`atomic_write`."""
    return _TMP.match(name) is not None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_tmp(directory: str | Path, legacy_age_s: float = 3600.0) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` in ``directory`` whose writer is gone (its pid is not
    alive; names of older versions without a pid: when older than ``legacy_age_s``). Returns what it removed."""
    d = Path(directory)
    removed = []
    if not d.is_dir():
        return removed
    for f in d.glob(".*.tmp"):
        m = _TMP.match(f.name)
        try:
            stale = (not pid_alive(int(m.group(1)))) if m and int(m.group(1)) != os.getpid() else \
                (m is None and time.time() - f.stat().st_mtime > legacy_age_s)
            if stale and f.is_file():
                f.unlink()
                removed.append(f)
        except OSError:
            pass
    return removed


#: the entries of a run directory and the command that writes each: no other command writes them
RUN_OWNERS = {"config.json": "train", "metrics.parquet": "train", "state.pt": "train", ".lock": "train",
              "checkpoints": "train", "progress.parquet": "progress", "phases.json": "progress",
              "llc.json": "progress", "llc_calibration.json": "progress",
              "report.html": "report", "forecast.json": "forecast"}


def run_file_owner(name: str) -> str | None:
    """The command that owns the run-directory entry ``name`` (``analysis*.json``: analyze); None: no run file."""
    if name in RUN_OWNERS:
        return RUN_OWNERS[name]
    return "analyze" if name.startswith("analysis") and name.endswith(".json") else None


def is_run_dir(d: Path) -> bool:
    """Whether ``d`` looks like a grokscope run directory: its ``config.json`` and one of the files training writes
    (another project's config.json alone does not make one)."""
    return (d / "config.json").is_file() and any((d / n).exists() for n in ("state.pt", "metrics.parquet",
                                                                              "checkpoints", ".lock"))


def enclosing_run(path: Path) -> Path | None:
    """The run directory ``path`` lies inside, or None."""
    for anc in path.parents:
        if is_run_dir(anc):
            return anc
    return None


def check_inside_run(name: str, path: str | Path, owner: str | None) -> None:
    """The file layer's one rule: no command writes inside a run directory except the run's files it owns
    (``owner``: the command, e.g. ``report`` for ``report.html``; the progress files also by ``report``, which
    computes them). ConfigError naming ``name`` and the path otherwise."""
    p = Path(os.path.realpath(Path(path).absolute()))
    run = enclosing_run(p)
    if run is None:
        return
    entry = p.relative_to(run).parts[0]
    own = run_file_owner(entry)
    if own is not None and len(p.relative_to(run).parts) == 1 and own in (owner, *({"report": ("progress",)}.get(
            owner or "", ()))):
        return
    what = f"the run's {entry}, which `grokscope {own}` writes" if own else "inside the run directory " + str(run)
    raise ConfigError(f"{name}={str(path)!r} is invalid: it is {what}; write outside the run directory "
                      "(a command writes only its own files in a run)")


def check_path_text(name: str, path: str | Path) -> None:
    """ConfigError if ``path`` holds a control character (a newline, a tab, ...): such a name breaks every line
    that shows it, and is never what was meant."""
    bad = [c for c in str(path) if ord(c) < 32 or ord(c) == 127]
    if bad:
        raise ConfigError(f"{name}={str(path)!r} is invalid: it holds the control character {bad[0]!r}; give a path "
                          "without control characters (newlines, tabs)")


def check_output(name: str, path: str | Path, kind: str = "file", owner: str | None = None) -> Path:
    """``path`` if a file (``kind="file"``) or directory (``kind="dir"``) can be written there: not an existing
    entry of the other kind, not under a file, in a directory this process can create files in (tried with a
    probe file, removed at once), and not inside a run directory unless it is a run file of ``owner``
    (:func:`check_inside_run`). ConfigError naming ``name`` otherwise. Creates nothing."""
    check_path_text(name, path)
    p = Path(path)
    check_inside_run(name, p, owner)
    if kind == "file" and p.is_dir():
        raise ConfigError(f"{name}={str(path)!r} is invalid: it is a directory; give a file name")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise ConfigError(f"{name}={str(path)!r} is invalid: it is a file, not a directory")
    anc = p.absolute() if kind == "dir" else p.absolute().parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{name}={str(path)!r} is invalid: {anc} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".grokscope-probe.", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{name}={str(path)!r} is invalid: cannot write in {anc} ({e.strerror or e})") from None
    return p
