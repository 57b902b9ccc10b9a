"""batch_load: many files decoded on a thread pool, MLX calls kept on the calling thread."""

from __future__ import annotations

import sys
import warnings
from concurrent.futures import ThreadPoolExecutor, wait

from . import _args
from ._read import _LoadJob
from ._source import describe
from .errors import AudioFormatError, AudioIOError


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
    on_error="raise",
):
    """Loads many files with a pool of threads; decoding runs without the GIL.

    Args:
        paths: Iterable of file paths (or in-memory sources, as for :func:`load`).
        sr, mono, mono_mode, layout, dtype, resample_quality, squeeze_mono: As for :func:`load`.
        num_workers: Decoding threads.
        progress: None; True for a progress bar on stderr (tqdm's when it is installed); or a
            callable ``progress(done, total)``, called on this thread after each file.
        on_error: What a file that cannot be loaded does. ``"raise"`` (the default): raise its
            error, once every decode in flight has finished. ``"return"``: its entry in the
            result is the exception (an :class:`AudioIOError` naming the file; a TypeError for
            an entry that is neither a path nor audio in memory) instead of
            ``(audio, sample_rate)``. ``"skip"``: leave it out of the result and warn once,
            naming every skipped file and why.

    Returns:
        ``[(audio, sample_rate), ...]`` in the order of ``paths`` (with ``on_error="skip"``,
        the files that loaded, still in that order).

    Raises:
        The first error any file raised, as :func:`load` would (``on_error="raise"``).
    """
    paths = list(paths)
    num_workers = _args.positive_int("num_workers", num_workers)
    if on_error not in _ON_ERROR:
        raise AudioFormatError(f"on_error must be one of {list(_ON_ERROR)}, got {on_error!r}")
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
        except (AudioIOError, OSError, TypeError, MemoryError) as e:  # per file, see on_error
            return e

    try:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            for base in range(0, len(paths), window):
                jobs = list(pool.map(open_job, paths[base : base + window]))
                _run_window(pool, jobs, results, base, report, on_error == "raise")
    finally:
        report(None)
    if on_error == "skip":
        return _skip_failed(paths, results)
    return results


_ON_ERROR = ("raise", "return", "skip")


def _skip_failed(paths, results) -> list:
    failed = [(p, r) for p, r in zip(paths, results, strict=True) if isinstance(r, Exception)]
    if failed:
        lines = "".join(f"\n  {describe(p)}: {e}" for p, e in failed)
        warnings.warn(
            f"batch_load skipped {len(failed)} of {len(paths)} file(s):{lines}", stacklevel=3
        )
    return [r for r in results if not isinstance(r, Exception)]


def _check_load_options(*, sr, mono, mono_mode, layout, dtype, quality, squeeze_mono) -> None:
    _args.optional_rate("sr", sr)
    _args.mono_mode(mono, mono_mode)
    _args.layout(layout)
    _args.dtype(dtype)
    _args.quality(quality)
    _args.flag("squeeze_mono", squeeze_mono)


def _run_window(pool, jobs, results, base, report, stop_on_error: bool) -> None:
    """Decodes one window of opened jobs on the pool into results[base:]. Nothing is closed
    while a worker may still be decoding it: every future has finished (or was cancelled)
    before the files close, whatever interrupts the loop (a file's error, an exception from
    the progress callback, Ctrl-C)."""
    failed = next((j for j in jobs if isinstance(j, Exception)), None)
    futures = []
    try:
        if stop_on_error and failed is not None:
            raise failed
        for job in jobs:  # MLX allocations stay on this thread
            futures.append(pool.submit(job.fill) if _allocate(job) else None)
        for i, (job, fut) in enumerate(zip(jobs, futures, strict=True)):
            try:
                if fut is None:
                    raise job if isinstance(job, Exception) else job.error
                fut.result()
                results[base + i] = job.result()
            except (AudioIOError, OSError, MemoryError, TypeError) as e:
                if stop_on_error:
                    raise
                results[base + i] = e
            report(base + i + 1)
    finally:
        for fut in futures:
            if fut is not None:
                fut.cancel()
        wait([f for f in futures if f is not None])
        for job in jobs:
            if not isinstance(job, Exception):
                job.src.close()


def _allocate(job) -> bool:
    """Allocates a job's output (MLX, this thread); False (and job.error) when it cannot run."""
    if isinstance(job, Exception):
        return False
    try:
        job.allocate()
    except AudioIOError as e:
        job.error = e
        return False
    return True


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
