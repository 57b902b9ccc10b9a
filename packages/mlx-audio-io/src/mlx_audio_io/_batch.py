"""batch_load: many files decoded on a thread pool, MLX calls kept on the calling thread."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from . import _args
from ._read import _LoadJob
from .errors import AudioFormatError


def batch_load(
    paths,
    sr=None,
    mono=False,
    mono_mode="mean",
    layout="channels_last",
    dtype="float32",
    resample_quality="default",
    squeeze_mono=False,
    num_workers=4,
    progress=None,
):
    """Loads many files with a pool of threads; decoding runs without the GIL.

    Args:
        paths: Iterable of file paths (or in-memory sources, as for :func:`load`).
        sr, mono, mono_mode, layout, dtype, resample_quality, squeeze_mono: As for :func:`load`.
        num_workers: Decoding threads.
        progress: None; True for a progress bar on stderr (tqdm's when it is installed); or a
            callable ``progress(done, total)``, called on this thread after each file.

    Returns:
        ``[(audio, sample_rate), ...]`` in the order of ``paths``.

    Raises:
        The first error any file raised, as :func:`load` would.
    """
    paths = list(paths)
    num_workers = _args.positive_int("num_workers", num_workers)
    options = dict(
        sr=sr,
        mono=mono,
        mono_mode=mono_mode,
        layout=layout,
        dtype=dtype,
        quality=resample_quality,
        squeeze_mono=squeeze_mono,
    )
    _check_load_options(**options)  # bad arguments fail before any file opens
    report = _progress_reporter(progress, len(paths))
    results: list = [None] * len(paths)
    window = max(16, 4 * num_workers)  # bounds the number of files open at once

    def open_job(path):
        try:
            return _LoadJob(path, **options)
        except Exception as e:  # re-raised below, after the window's files are closed
            return e

    try:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            for base in range(0, len(paths), window):
                jobs = list(pool.map(open_job, paths[base : base + window]))
                try:
                    _run_window(pool, jobs, results, base, report)
                finally:
                    for job in jobs:
                        if not isinstance(job, Exception):
                            job.src.close()
    finally:
        report(None)
    return results


def _check_load_options(*, sr, mono, mono_mode, layout, dtype, quality, squeeze_mono) -> None:
    _args.optional_rate("sr", sr)
    _args.mono_mode(mono, mono_mode)
    _args.layout(layout)
    _args.dtype(dtype)
    _args.quality(quality)
    _args.flag("squeeze_mono", squeeze_mono)


def _run_window(pool, jobs, results, base, report) -> None:
    failed = next((j for j in jobs if isinstance(j, Exception)), None)
    if failed is not None:
        raise failed
    for job in jobs:  # MLX allocations stay on this thread
        job.allocate()
    for i, _ in enumerate(pool.map(_LoadJob.fill, jobs)):
        results[base + i] = jobs[i].result()
        report(base + i + 1)


def _progress_reporter(progress, total: int):
    """A function called with the number of files done, and with None when finished."""
    if progress is None or progress is False:
        return lambda done: None
    if callable(progress):
        return lambda done: None if done is None else progress(done, total)
    if progress is not True:
        raise AudioFormatError(f"progress must be None, True or a callable, got {progress!r}")
    try:
        from tqdm import tqdm
    except ImportError:
        return _line_progress(total)
    bar = tqdm(total=total, unit="file", desc="batch_load")
    return lambda done: bar.close() if done is None else bar.update(done - bar.n)


def _line_progress(total: int):
    def line(done):
        end = "\n" if done is None else ""
        sys.stderr.write(f"\rbatch_load: {total if done is None else done}/{total} files{end}")
        sys.stderr.flush()

    return line
