"""argparse value types that refuse a bad value at once, naming the option, the value and what is accepted.

argparse prints "argument --threads: ..." before the message, so a user sees which option to fix; nothing
has been trained or written by then.
"""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """A whole number of at least 1 (threads, epochs, iterations, images, CPUs)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip().lstrip("+"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1 (e.g. 1)")
    return value


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
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1 to 65535 (e.g. 8866)")
    return value
