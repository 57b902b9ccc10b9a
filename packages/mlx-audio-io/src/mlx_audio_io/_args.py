"""Argument checks shared by the public functions; messages say what was expected and got."""

from __future__ import annotations

import math
import numbers
import operator
import os

import mlx.core as mx

from .errors import AudioFormatError

LAYOUTS = ("channels_last", "channels_first")
DTYPES = {"float32": mx.float32, "float16": mx.float16}
#: resample_quality names -> libsoxr recipe index (0 quick cubic ... 4 very high quality)
QUALITIES = {
    "fastest": 0,
    "low": 1,
    "medium": 2,
    "default": 3,
    "high": 4,
    "best": 4,
    "soxr_hq": 3,
    "soxr_vhq": 4,
}
MONO_MODES = {"mean": 1, "equal_power": 2}


#: the largest value a C int parameter (sample rates, channels) takes
INT_MAX = 2**31 - 1
#: the largest frame count or position passed to the native layer (int64, with headroom)
FRAMES_MAX = 2**62


def as_path(path) -> str:
    """A filesystem path as str; rejects other input with a TypeError, and a NUL inside it
    (which the operating system would read as the end of the name) with a ValueError."""
    if type(path) is str or isinstance(path, (str, os.PathLike)):
        p = os.fspath(path)
        if isinstance(p, str):
            if "\0" in p:
                raise AudioFormatError(f"path must not contain a NUL character, got {p!r}")
            return p
    raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")


def native_path(path: str) -> bytes:
    """The path's bytes for the native layer: the file system's encoding, so names that are
    not valid UTF-8 (held by Python as surrogate escapes) open the very same file."""
    return os.fsencode(path)


def positive_int(name: str, value, maximum: int = INT_MAX) -> int:
    """An integer in [1, maximum] (Python or NumPy int, or an integral float)."""
    n = None if isinstance(value, bool) or not isinstance(value, numbers.Real) else whole(value)
    if n is not None and n > maximum:
        raise AudioFormatError(f"{name} must be at most {maximum}, got {value!r}")
    if n is None or n < 1:
        raise AudioFormatError(f"{name} must be a positive integer, got {value!r}")
    return n


def whole(value) -> int | None:
    """``value`` as an int when it is a whole number: an int or NumPy integer, or a float,
    NumPy float or Fraction whose value is an integer a float holds exactly; else None
    (strings, NaN, infinities, 128.5). Callers decide about bools."""
    if isinstance(value, (str, bytes)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        pass
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(f) if math.isfinite(f) and f == value and f.is_integer() else None


def optional_rate(name: str, value) -> int | None:
    return None if value is None else positive_int(name, value)


def seconds(name: str, value, *, allow_zero: bool) -> float:
    """A finite time in seconds, >= 0 (or > 0 when allow_zero is False)."""
    if (type(value) is float or type(value) is int) and (
        0 < value < math.inf or (value == 0 and allow_zero)
    ):
        return float(value)  # the common case, without the ABC checks below (~1 us)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise AudioFormatError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise AudioFormatError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def layout(value) -> str:
    if value not in LAYOUTS:
        raise AudioFormatError(f"layout must be one of {list(LAYOUTS)}, got {value!r}")
    return value


def dtype(value):
    """'float32'/'float16' (or the mx/NumPy dtype) -> mx dtype."""
    key = value if isinstance(value, str) else getattr(value, "name", None) or str(value)
    key = key.replace("mlx.core.", "")
    if key not in DTYPES:
        raise AudioFormatError(f"dtype must be 'float32' or 'float16', got {value!r}")
    return DTYPES[key]


def quality(value) -> int:
    if value not in QUALITIES:
        raise AudioFormatError(
            f"resample_quality must be one of {sorted(QUALITIES)}, got {value!r}"
        )
    return QUALITIES[value]


def mono_mode(mono, mode) -> int:
    """The native mix-down code: 0 none, 1 mean, 2 equal power (sum / sqrt(channels))."""
    if mono not in (True, False):
        raise AudioFormatError(f"mono must be True or False, got {mono!r}")
    if mode not in MONO_MODES:
        raise AudioFormatError(f"mono_mode must be one of {sorted(MONO_MODES)}, got {mode!r}")
    return MONO_MODES[mode] if mono else 0


def flag(name: str, value) -> bool:
    if value not in (True, False):
        raise AudioFormatError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def squeeze(out: mx.array, layout: str) -> mx.array:
    """[frames, 1] or [1, frames] -> [frames]; anything else unchanged."""
    if out.ndim == 2 and out.shape[1 if layout == "channels_last" else 0] == 1:
        return out[:, 0] if layout == "channels_last" else out[0]
    return out
