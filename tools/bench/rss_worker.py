"""Peak memory of one full load, for ``tools/bench/bench_io.py``: run in a fresh process per
(library, file), with whichever venv's Python holds the library::

    python rss_worker.py LIBRARY PATH

LIBRARY is ``mlx_audio_io`` (this repository, or the PyPI release 1.3.24 in its own venv:
same import name), ``soundfile``, ``librosa`` or ``torchaudio``; each loads the whole file
the way the timing rows do. After the import, the peak resident set is reset
(``/proc/self/clear_refs``), the file is loaded once and the output forced, and the last line
of stdout is JSON: ``{"peak": bytes above the resident set before the load, "output": the
result's bytes}`` or ``{"error": ...}``. Linux only (``/proc``). Standard library and the
library under test only: it runs inside the peers' own venvs.
"""

from __future__ import annotations

import json
import sys
import warnings


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _loader(library: str, path: str):
    """Imports the library (before the baseline) and returns the load call."""
    if library == "mlx_audio_io":
        import mlx_audio_io as aio

        import mlx.core as mx

        def load():
            out = aio.load(path)[0]
            mx.eval(out)
            return out.nbytes

        return load
    if library == "soundfile":
        import soundfile as sf

        return lambda: sf.read(path, dtype="float32")[0].nbytes
    if library == "librosa":
        import librosa

        return lambda: librosa.load(path, sr=None, mono=False)[0].nbytes
    if library == "torchaudio":
        import torchaudio

        def load():
            x = torchaudio.load(path)[0]
            return x.numel() * x.element_size()

        return load
    raise ValueError(f"unknown library {library!r}")


def main(argv: list[str]) -> int:
    """Measures one load (see the module docstring)."""
    library, path = argv
    try:
        load = _loader(library, path)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
        before = _status_kib("VmRSS")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbytes = load()
        peak = _status_kib("VmHWM")
        result = {"peak": (peak - before) * 1024, "output": int(nbytes)}
    except Exception as e:  # noqa: BLE001 - reported to the caller, not raised
        result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
