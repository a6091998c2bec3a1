"""The one validation path for every value a user gives (config fields and every subcommand's options).

Every check raises :class:`ConfigError` with one line ``NAME=VALUE is invalid: must be ALLOWED``; the CLI prints
it as ``grokscope: error: ...`` and exits with code 2. Numbers must be finite, integers must fit in 64 bits, and
seeds are unsigned 64-bit integers (what ``torch.Generator.manual_seed`` takes).

    number("lr", x, lo=0, lo_open=True)                  # a finite number > 0
    number("frac_train", x, lo=0, hi=1, lo_open=True)    # in (0, 1]
    integer("epochs", n, lo=1)                           # an integer >= 1 (and < 2**63)
    seed("seed", s)                                      # an integer in 0 .. 2**64 - 1
    memory_fits(needed_bytes, what, device)              # the machine has the memory a config needs
"""

from __future__ import annotations

import math
import os
from typing import Any

INT_MAX = 2**63 - 1
SEED_MAX = 2**64 - 1


class ConfigError(ValueError):
    """A bad value (of a config field, a CLI option or a run file); the message is one line naming it."""


def bad(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is invalid: must be {allowed}")


def _interval(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return ""


def number(name: str, value: Any, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False) -> float:
    """``value`` if it is a finite real number within the bounds (open or closed); ConfigError otherwise."""
    allowed = ("a finite number " + _interval(lo, hi, lo_open, hi_open)).strip()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(name, value, allowed)
    try:
        x = float(value)
    except OverflowError:  # an int beyond float range
        raise bad(name, value, allowed) from None
    if not math.isfinite(x) or (lo is not None and (x <= lo if lo_open else x < lo)) or \
            (hi is not None and (x >= hi if hi_open else x > hi)):
        raise bad(name, value, allowed)
    return value


def integer(name: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in ``lo .. hi`` (``hi`` defaults to 2**63 - 1); ConfigError otherwise."""
    top = INT_MAX if hi is None else hi
    if lo is not None and hi is not None:
        allowed = f"an integer in {lo}..{hi}"
    elif lo is not None:
        allowed = f"an integer >= {lo}" + (" (and < 2**63)" if hi is None else f" and <= {hi}")
    else:
        allowed = "an integer" + (" (and < 2**63)" if hi is None else f" <= {hi}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(name, value, allowed)
    if (lo is not None and value < lo) or value > top or value < -INT_MAX - 1:
        raise bad(name, value, allowed)
    return value


def seed(name: str, value: Any) -> int:
    """A seed: an integer in 0 .. 2**64 - 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise bad(name, value, "an integer in 0..2**64-1")
    return value


def choice(name: str, value: Any, allowed) -> Any:
    if value not in allowed:
        raise bad(name, value, "one of " + ", ".join(map(str, allowed)))
    return value


def parse(name: str, text: str, typ: type) -> Any:
    """Command-line text as an int or float (one-line ConfigError naming ``name`` otherwise); checks come after."""
    try:
        return typ(text.strip())
    except (ValueError, OverflowError):
        raise ConfigError(f"{name}={text!r} is invalid: must be {'an integer' if typ is int else 'a number'}") from None


# ---------------------------------------------------------------------- memory
def available_memory(device: str = "cpu") -> int | None:
    """Bytes this process may still allocate on ``device`` (CPU: MemAvailable of /proc/meminfo, or the physical
    memory; CUDA: the free memory of the device), None where it cannot be told."""
    if str(device).startswith("cuda"):
        import torch  # only for a CUDA device

        try:
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free)
        except Exception:  # noqa: BLE001 - no answer is not an error
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def fmt_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1e6:.2f} MB"


def memory_fits(needed: float, what: str, device: str = "cpu", available: int | None = None,
                shrink: str = "p, d_model, d_mlp, epochs") -> None:
    """ConfigError if ``needed`` bytes (a lower estimate) exceed what ``device`` has available; ``shrink``: the
    fields the message suggests making smaller."""
    have = available_memory(device) if available is None else available
    if have is not None and needed > have:
        raise ConfigError(f"{what} is invalid: it needs at least ~{fmt_bytes(needed)} of memory but this machine "
                          f"has ~{fmt_bytes(have)} available ({device}); use a smaller {shrink} or fewer models")
