"""The protocols the external-peer workers share: one JSON spec in and one JSON result out
(`serve`: the public mlx-audio-io, torchaudio), or JSON lines call by call (`serve_lines`: the
mp3 and demucs workers). Standard library and NumPy only: it runs inside the peers' own venvs."""

from __future__ import annotations

import ast
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path


def frames_of(out) -> int | None:
    """Frame count of a returned array (channels-first or channels-last), if it is one."""
    shape = getattr(out, "shape", None)
    return max(shape) if shape else None


def warm_up(fn: Callable[[], object], warmups: int) -> tuple[object, list[str]]:
    """Runs the warm-ups, returning the last output and the distinct warnings raised."""
    out, seen = None, []
    for _ in range(warmups):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn()
        for w in caught:
            if issubclass(w.category, DeprecationWarning):
                continue
            msg = f"{w.category.__name__}: {' '.join(str(w.message).split())[:160]}"
            if msg not in seen:
                seen.append(msg)
    return out, seen


BATCH_S = 0.002  # calls shorter than this are timed in batches about this long


def timed_runs(fn: Callable[[], object], runs: int) -> list[float]:
    """``runs`` timings of ``fn`` in ms. A call under BATCH_S is timed in batches of repeated
    calls about BATCH_S long, each sample the batch's mean: single calls of a few
    microseconds measure the clock and the first touch of caches more than the call."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    inner = 1 if once >= BATCH_S else min(1000, max(1, int(BATCH_S / max(once, 1e-7))))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) * 1e3 / inner)
    return times


def time_task(task: dict, runs: int, warmups: int, make_fn, save_npy, extra_notes) -> dict:
    """Times one task (warm-ups, then ``runs`` calls); any failure becomes ``{"error": ...}``.

    ``make_fn(task)`` builds the call, ``save_npy(path, out)`` stores an output the main
    script asked for, ``extra_notes(task)`` adds footnotes about what the peer really did.
    """
    try:
        fn = make_fn(task)
        out, notes = warm_up(fn, warmups)
        notes += extra_notes(task)
        if task.get("npy"):
            save_npy(task["npy"], out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            times = timed_runs(fn, runs)
    except Exception as e:  # noqa: BLE001 - reported to the caller, not raised
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    return {
        "p50": statistics.median(times),
        "min": min(times),
        "frames": frames_of(out),
        "notes": notes,
    }


def serve(label: str, make_fn, save_npy, extra_notes=lambda task: []) -> int:
    """Reads the JSON spec (argv[1] or stdin), times every task and prints the JSON result as
    the last line of stdout."""
    spec = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    runs, warmups = int(spec["runs"]), int(spec.get("warmups", 2))
    results = {}
    for task in spec["tasks"]:
        res = results[task["name"]] = time_task(task, runs, warmups, make_fn, save_npy, extra_notes)
        shown = res.get("error") or f"p50 {res['p50']:.2f} ms"
        print(f"  {task['name']:<36} {'(' + label + ')':<13} {shown}", file=sys.stderr)
    print(json.dumps(results))
    return 0


def definitions_from(path, names: tuple[str, ...], namespace: dict) -> dict:
    """The top-level functions and assignments called ``names`` in the module at ``path``,
    executed in ``namespace`` (which must supply what they use) and returned in it.

    The parity tools import MLX at the top, and ``mlx_audio_io`` would preload OpenBLAS
    globally into torch's process: so a worker takes only the definitions it needs from
    their source.
    """
    tree = ast.parse(Path(path).read_text(), str(path))

    def wanted(node: ast.stmt) -> bool:
        if isinstance(node, ast.FunctionDef):
            return node.name in names
        return isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in names for t in node.targets
        )

    body = [node for node in tree.body if wanted(node)]
    exec(compile(ast.Module(body, type_ignores=[]), str(path), "exec"), namespace)
    missing = [name for name in names if name not in namespace]
    if missing:
        raise RuntimeError(f"{path} no longer defines {', '.join(missing)}")
    return namespace


def serve_lines(setup: Callable[[dict], tuple], handle: Callable[[dict, object], dict]) -> int:
    """JSON lines on stdin/stdout: the first line is the spec, ``setup(spec)`` returns
    ``(state, info)`` and is answered ``{"ready": true, **info}``; then every line is a command
    answered by ``handle(cmd, state)``, until ``{"op": "quit"}`` or EOF. Failures answer
    ``{"error": "..."}`` (a failed setup also ends the worker)."""
    proto = sys.stdout
    sys.stdout = sys.stderr  # anything the libraries print must not corrupt the protocol

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    spec = json.loads(sys.stdin.readline())
    try:
        state, info = setup(spec)
    except Exception as e:  # noqa: BLE001  (reported to the parent, which shows n/a)
        reply({"error": f"{type(e).__name__}: {e}"})
        return 1
    reply({"ready": True, **info})
    while line := sys.stdin.readline():
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            reply(handle(cmd, state))
        except Exception as e:  # noqa: BLE001
            reply({"error": f"{type(e).__name__}: {e}"})
    return 0
