"""argparse value types that refuse a bad value at once, naming the option, the value and what is accepted.

argparse prints "argument --threads: ..." before the message, so a user sees which option to fix; nothing
has been trained or written by then.
"""

from __future__ import annotations

import argparse
import math
import re


def _whole_number(text: str) -> int | None:
    """`text` as an int when it is written as one ("3", "+3"; not "3.0" or "3e2"), else None."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if str(value) == text.strip().lstrip("+") else None


def positive_int(text: str) -> int:
    """A whole number of at least 1 (threads, epochs, iterations, images, CPUs)."""
    value = _whole_number(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1 (e.g. 1)")
    return value


def commit_id(text: str) -> str:
    """A git commit id: 4 to 40 hexadecimal digits (what `git rev-parse HEAD` prints, or a short form of it)."""
    if not re.fullmatch(r"[0-9a-f]{4,40}", text.strip().lower()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a git commit id; pass what `git rev-parse HEAD` prints "
                                         "where the code's history is (e.g. 4000836)")
    return text.strip().lower()


def finite_float(text: str) -> float:
    """A real number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number (e.g. 1.5)")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (seconds, learning rates)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
    return value


def port(text: str) -> int:
    """A TCP port a server can listen on and the user can open: 1 to 65535."""
    value = _whole_number(text)
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1 to 65535 (e.g. 8866)")
    return value


def check_count(value, option: str, none_means: str | None = None):
    """`value` if it is a whole number of at least 1 (or None where `none_means` says what None stands for),
    else a ValueError naming `option` and the value: the same rule as `positive_int`, for values given in Python
    (notebooks, sweep and campaign options) rather than on the command line."""
    if value is None and none_means is not None:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        allowed = f" or None ({none_means})" if none_means is not None else ""
        raise ValueError(f"{option} {value!r} is not a whole number of at least 1{allowed}; give e.g. {option} 1")
    return int(value)
