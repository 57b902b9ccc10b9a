"""`make bench`: HTDemucs source separation, mlx_audio_sts (MLX, CPU) against the official
demucs 4.1.0 (PyTorch, CPU), same configuration, same weights, same input, in one run.

demucs runs in its own venv (``.bench/demucs-venv``: ``pip install torch==2.13.0
demucs==4.1.0``, created on first use; torch never enters the workspace's environment) in a
subprocess, ``demucs_worker.py``. The worker builds demucs' ``HTDemucs`` with the official
htdemucs configuration and seeded random weights rounded to float16 (``tools/parity/
htdemucs.py``) and saves it as a demucs ``.th`` package; this script converts that file with
``mlx_audio_sts.models.htdemucs.convert.load_th``, so both sides hold the same weights. Calls
alternate ours, demucs, ours, demucs ...; each output is checked against demucs' (max abs error
over scale <= 1e-4), so the table compares two runs of the same model. Writes
``docs/benchmarks_sts.md`` (or ``--out``).

Usage::

    uv run --all-packages python tools/bench/bench_sts.py [--quick] [--out PATH]

A full run (30 s of audio) takes about 20 minutes on 2 cores; ``--quick`` (8 s of audio, one
timed round per row) only checks that the script works.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# isort: off
import mlx_audio_io as aio  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
import mlx_audio_sts
import numpy as np
from bench_io import blas_state, run_step, setup_venv, worker_env
from common import Anchor, Footnotes, machine_line, probe_venv, version
from mlx_audio_sts.models.htdemucs import convert
from mp3_worker import make_signal

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".bench"
DEFAULT_OUT = ROOT / "docs" / "benchmarks_sts.md"
WORKER = Path(__file__).resolve().with_name("demucs_worker.py")
VENV = CACHE / "demucs-venv"
TORCH_VERSION = "2.13.0"
DEMUCS_VERSION = "4.1.0"
PEER = f"demucs {DEMUCS_VERSION}"
OURS = "mlx_audio_sts"
THREADS = 2  # torch threads: the target machine's 2 cores
REPLY_TIMEOUT_S = 3600

SR = 44100
SEGMENT_FRAMES = 343980  # htdemucs' training length: 39/5 s at 44.1 kHz
MODEL_SEED = 0
SIGNAL_SEED = 20240607
SHIFT_SEED = 7
TOL = 1e-4


@dataclass(frozen=True)
class Mode:
    """Audio length and repetitions: the full run, or --quick to check the script works."""

    seconds: float
    segment_runs: tuple[int, int]  # (warm-up rounds, timed rounds) for one forward pass
    track_runs: tuple[int, int]  # the same for a whole track


FULL = Mode(30.0, (1, 5), (1, 3))
QUICK = Mode(8.0, (1, 1), (0, 1))  # the segment row warms both models up


@dataclass
class Result:
    """Timings (seconds) of one side of one row, or why it could not run."""

    times: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def p50(self) -> float | None:
        return statistics.median(self.times) if self.times and not self.error else None

    @property
    def min(self) -> float | None:
        return min(self.times) if self.times and not self.error else None


@dataclass
class Row:
    """One benchmark row: what both sides run, their timings and how far apart the outputs are."""

    key: str
    label: str
    audio_s: float
    ours: Result = field(default_factory=Result)
    peer: Result | None = None  # None: a row of ours only
    err: float | None = None
    err_note: str | None = None


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (other work on the machine shows here)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


@dataclass
class Run:
    """One benchmark run: its settings, the demucs venv and worker, and what it measured."""

    mode: Mode
    quick: bool
    state: Anchor
    hello: dict = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    error: str | None = None
    load: str = field(default_factory=load_average)
    started: str = field(
        default_factory=lambda: datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    )


# --------------------------------------------------------------------------------------------
# demucs: its own venv, driven through demucs_worker.py
# --------------------------------------------------------------------------------------------


def install_pins(venv: Path, pins: list[str]) -> tuple[str | None, str]:
    """Creates ``venv`` (``python3 -m venv``) when missing and pip-installs ``pins``."""
    steps = []
    if not (venv / "bin" / "python").exists():
        python3 = shutil.which("python3") or sys.executable
        steps.append([python3, "-m", "venv", "--clear", str(venv)])
    steps.append([str(venv / "bin" / "pip"), "install", *pins, "--progress-bar", "off"])
    for cmd in steps:
        err, _ = run_step(cmd, env=worker_env(), echo=True)
        if err:
            return err, ""
    return None, "installed with pip"


def setup_torch_peer(venv: Path, dist: str, pin: str, module: str) -> Anchor:
    """A torch peer's own venv (``torch==TORCH_VERSION``, ``dist==pin``, numpy), reused
    when it imports ``module`` at the pinned versions, else (re)installed with pip. Its probe
    reports the versions of torch, ``dist`` and numpy, and Python's."""
    code = (
        f"import json, platform, importlib.metadata as m, torch, {module}; print(json.dumps("
        f"{{'torch': torch.__version__, {dist!r}: m.version({dist!r}), "
        "'numpy': m.version('numpy'), 'python': platform.python_version()}))"
    )

    def probe(python: Path) -> dict | None:
        found = probe_venv(python, code, worker_env())
        ok = found and found["torch"].split("+")[0] == TORCH_VERSION and found[dist] == pin
        return found if ok else None

    pins = [f"torch=={TORCH_VERSION}", f"{dist}=={pin}", "numpy"]
    return setup_venv(" + ".join(pins[:2]), venv / "bin" / "python", probe,
                      lambda _python: install_pins(venv, pins))  # fmt: skip


class WorkerError(RuntimeError):
    """A peer worker failed, died or did not answer."""


class LineWorker:
    """One peer worker process in its own venv (``worker_loop.serve_lines``): started with
    ``spec`` as its first line (its reply is ``.hello``), then answering commands."""

    def __init__(self, python: Path, script: Path, spec: dict, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [str(python), "-I", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(log, "w"),  # noqa: SIM115  (the child owns it)
            text=True,
            bufsize=1,
            env=worker_env(),
        )
        try:
            self.hello = self.ask(spec)
        except WorkerError:
            self.close()
            raise

    def ask(self, cmd: dict) -> dict:
        """Sends one command and returns its reply (raises WorkerError on failure)."""
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], REPLY_TIMEOUT_S)
            line = self.proc.stdout.readline() if ready else ""
        except OSError as e:
            raise WorkerError(f"worker pipe: {e}") from e
        if not line:
            tail = [ln for ln in self.log.read_text().splitlines() if ln.strip()][-1:]
            raise WorkerError(f"the worker gave no answer ({' '.join(tail) or 'no log'})")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply

    def close(self) -> None:
        """Asks the worker to quit, then makes sure it is gone."""
        try:
            self.proc.stdin.write('{"op": "quit"}\n')
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------------------------
# Timing: ours and demucs in turn, call by call
# --------------------------------------------------------------------------------------------


def ours_call(fn: Callable[[], object]) -> Callable[[], tuple[object, float]]:
    """A call of ``fn`` (outputs forced with ``mx.eval``) returning (output, seconds)."""

    def run():
        t0 = time.perf_counter()
        out = fn()
        mx.eval(out)
        return out, time.perf_counter() - t0

    return run


def peer_call(worker: LineWorker, cmd: dict, npy: Path) -> Callable[[bool], float]:
    """A worker command returning the worker's own timing in seconds; ``save`` makes it write
    its output to ``npy`` (outside the timing)."""
    return lambda save: worker.ask({**cmd, "npy": str(npy) if save else None})["ms"] / 1e3


def alternate(ours, peer, warmups: int, runs: int) -> tuple[Result, Result | None, object]:
    """Rounds of ours then the peer (``peer`` None: ours alone); the first ``warmups`` rounds
    are not timed. Returns both results and our first output (the peer saves its first)."""
    mine, theirs, first = Result(), None if peer is None else Result(), None
    for rnd in range(warmups + runs):
        if not mine.error:
            try:
                out, secs = ours()
                first = out if rnd == 0 else first
                if rnd >= warmups:
                    mine.times.append(secs)
            except Exception as e:  # noqa: BLE001  (shown in the table)
                mine.error = f"{type(e).__name__}: {e}"
        if theirs is not None and not theirs.error:
            try:
                secs = peer(rnd == 0)
                if rnd >= warmups:
                    theirs.times.append(secs)
            except WorkerError as e:
                theirs.error = str(e)
    return mine, theirs, first


def rel_err(ours, npy: Path) -> float:
    """max |ours - demucs| / max |demucs| over the whole output."""
    ref = np.load(npy).astype(np.float64)
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-12))


def measure(row: Row, ours, peer, npy: Path, runs: tuple[int, int], as_ref=np.asarray) -> Row:
    """Fills ``row``: times ours against the peer, then compares ``as_ref(our output)`` with
    the output the peer saved at ``npy`` (``peer`` None: ours alone, against an earlier row's
    ``npy``)."""
    print(f"{row.label} ...", file=sys.stderr)
    row.ours, row.peer, first = alternate(ours, peer, *runs)
    if first is None or not npy.exists():
        row.err_note = "no output to compare"
    else:
        row.err = rel_err(as_ref(first), npy)
    for name, res in ((OURS, row.ours), (PEER, row.peer)):
        if res is not None:
            shown = res.error or f"p50 {res.p50:.2f} s, min {res.min:.2f} s"
            print(f"  {name:<14} {shown}", file=sys.stderr)
    if row.err is not None:
        print(f"  max abs err / scale {row.err:.1e}", file=sys.stderr)
    return row


def stems(out: dict) -> np.ndarray:
    """``separate()``'s ``{source: [frames, channels]}`` as demucs' ``[1, S, C, frames]``."""
    return np.stack([np.asarray(a).T for a in out.values()])[None]


def run_rows(model, worker: LineWorker, mix: np.ndarray, tmp: Path, mode: Mode) -> list[Row]:
    """Every row: one forward pass of one segment, apply_model with shifts 0 and 1, and
    ``separate()`` as a user calls it (ours only, against demucs' shifts=1 output)."""
    seconds = mix.shape[-1] / SR
    seg = mx.array(mix[None, :, :SEGMENT_FRAMES])
    fwd = {"op": "forward", "frames": SEGMENT_FRAMES}
    npy = tmp / "forward.npy"
    row = Row("forward", f"one forward pass, {SEGMENT_FRAMES / SR:.1f} s segment",
              SEGMENT_FRAMES / SR)  # fmt: skip
    rows = [
        measure(row, ours_call(lambda: model(seg)), peer_call(worker, fwd, npy), npy,
                mode.segment_runs)
    ]  # fmt: skip
    for shifts in (0, 1):

        def apply(shifts=shifts):
            return mlx_audio_sts.apply_model(model, mix[None], shifts=shifts, seed=SHIFT_SEED)

        cmd = {"op": "apply", "shifts": shifts, "seed": SHIFT_SEED}
        npy = tmp / f"apply{shifts}.npy"
        label = f"apply_model, {seconds:g} s, shifts={shifts}" + (
            " (demucs' default)" if shifts else ""
        )
        row = Row(f"apply{shifts}", label, seconds)
        rows.append(
            measure(row, ours_call(apply), peer_call(worker, cmd, npy), npy, mode.track_runs)
        )

    def sep():
        return mlx_audio_sts.separate(
            mix.T, model, shifts=1, seed=SHIFT_SEED, sample_rate=SR, normalize=False
        )

    row = Row("separate", f"separate(), {seconds:g} s, shifts=1, normalize=False", seconds)
    runs = (0, mode.track_runs[1])  # the model is warm by now
    rows.append(measure(row, ours_call(sep), None, tmp / "apply1.npy", runs, stems))
    return rows


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def machine_section(run: Run) -> list[str]:
    """The Machine lines."""
    state = run.state
    head = f"- {PEER} (PyPI, own venv `.bench/{VENV.name}`"
    if state.python is None:
        peer = f"{head}): unavailable ({state.setup}: {state.error})"
    else:
        p = state.probe
        peer = (
            f"{head}, Python {p.get('python')}): {state.setup}; torch {p.get('torch')}, numpy"
            f" {p.get('numpy')}; CPU, torch threads: {run.hello.get('threads', 'n/a')}"
        )
    return [
        "## Machine",
        "",
        machine_line(),
        f"- Python {platform.python_version()}; mlx {version('mlx')}; mlx_audio_sts (this repo)"
        f" {mlx_audio_sts.__version__}; numpy {np.__version__}; BLAS preload: {blas_state()}",
        peer,
        f"- Load average at start (1, 5, 15 min): {run.load}",
        f"- Date: {run.started}",
        "",
    ]


def method_section(mode: Mode, quick: bool) -> list[str]:
    """The Method lines."""
    bullets = [
        "Model: demucs' `HTDemucs` with the official htdemucs configuration (`OFFICIAL` in"
        " `tools/parity/htdemucs.py`: 4 sources, 7.8 s segments, 48 channels, depth 4, a"
        f" 5-layer cross-transformer) and seeded random weights rounded to float16 (seed"
        f" {MODEL_SEED}), saved as a demucs `.th` package by `tools/bench/demucs_worker.py`;"
        " ours is `mlx_audio_sts.models.htdemucs.convert.load_th` of that file. The compute"
        " does not depend on the weights' values.",
        f"Input: {mode.seconds:g} s of stereo {SR} Hz synthetic music-like audio"
        f" (`mp3_worker.make_signal`, seed {SIGNAL_SEED}); the segment row takes its first"
        f" {SEGMENT_FRAMES} frames (the model's training length).",
        f"demucs: `demucs.apply.apply_model(model, mix[None], shifts=S, split=True,"
        f" overlap=0.25)` and `model(segment)`, under `torch.no_grad()` with"
        f" `torch.set_num_threads({THREADS})`, in its own process and venv; the worker times"
        " the call itself (no IPC in the number).",
        "Ours: `mlx_audio_sts.apply_model(model, mix[None], shifts=S, seed=k)` (same defaults:"
        " split, overlap 0.25) and `model(segment)`, MLX on the CPU, outputs forced with"
        " `mx.eval`. For shifts=1, demucs gets `random.seed(k)` before its call and ours"
        f" `seed=k` (k = {SHIFT_SEED}): the same shift offsets.",
        "`separate()` row: `mlx_audio_sts.separate(audio [frames, channels], model, shifts=1,"
        " seed=k, sample_rate=44100, normalize=False)`, ours only. Over `apply_model` it adds"
        " the input checks and transposes and the channels-last output; compare it with the"
        " shifts=1 row.",
        "Order: each round calls ours, then demucs. Rounds (warm-up, timed): forward pass"
        f" {mode.segment_runs}, whole track {mode.track_runs}. Cells are p50 (min) in seconds.",
        "RTF (real-time factor) = audio seconds / p50 seconds: above 1 is faster than real"
        " time. torch / ours = demucs p50 / our p50: above 1 we are faster. paired = the"
        " median over rounds of demucs' time / ours in the same round (the two calls run"
        " seconds apart, so the machine's drifts in speed cancel out of each ratio).",
        "Agreement: max |ours - demucs| / max |demucs| over the first output of each side;"
        " at most 1e-4 shows both ran the same model.",
        "The 2-core machine may be shared with other work: read min next to p50.",
        "Command: `make bench`, or `uv run --all-packages python tools/bench/bench_sts.py`"
        " (`--quick`: 8 s of audio, one timed round, to check the script works).",
    ]
    if quick:
        bullets.append(
            "**This is a `--quick` run** (8 s of audio, one timed round, no warm-up for the"
            " whole-track rows beyond the segment row's): run without `--quick` for the"
            " numbers to quote."
        )
    return ["## Method", "", *(f"- {b}" for b in bullets), ""]


def fmt_s(v: float | None) -> str:
    """Seconds with sensible precision."""
    return "n/a" if v is None else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def cell(res: Result | None, notes: Footnotes) -> str:
    """'p50 (min)' of one side, 'n/a' with the reason as a footnote, or '—' (not run)."""
    if res is None:
        return "—"
    if res.p50 is None:
        return f"n/a{notes.ref(res.error or 'no timed run')}"
    return f"{fmt_s(res.p50)} ({fmt_s(res.min)})"


def paired(ours: Result, peer: Result | None) -> str:
    """Median over rounds of the peer's time / ours in the same round: the two calls run
    seconds apart, so drifts of this shared machine's speed cancel out of each ratio."""
    if peer is None or not ours.p50 or not peer.p50 or len(ours.times) != len(peer.times):
        return "—"
    return f"{statistics.median(p / o for p, o in zip(peer.times, ours.times, strict=True)):.2f}x"


def rtf(audio_s: float, res: Result | None) -> str:
    """Real-time factor at p50."""
    return "—" if res is None else "n/a" if res.p50 is None else f"{audio_s / res.p50:.2f}"


def table(rows: list[Row], notes: Footnotes) -> list[str]:
    """The results table in markdown."""
    lines = [
        f"| case | audio s | {OURS} p50 (min) | {OURS} RTF | {PEER} p50 (min) | {PEER} RTF"
        " | torch / ours | paired | max abs err / scale |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "—" if r.peer is None else "n/a"
        if r.peer is not None and r.peer.p50 and r.ours.p50:
            ratio = f"{r.peer.p50 / r.ours.p50:.2f}x"
        if r.err is None:
            err = f"n/a{notes.ref(r.err_note or 'not compared')}"
        else:
            err = f"{r.err:.1e}" + ("" if r.err <= TOL else " (**over tolerance**)")
        lines.append(
            f"| {r.label} | {r.audio_s:.1f} | {cell(r.ours, notes)} | {rtf(r.audio_s, r.ours)}"
            f" | {cell(r.peer, notes)} | {rtf(r.audio_s, r.peer)} | {ratio}"
            f" | {paired(r.ours, r.peer)} | {err} |"
        )
    return lines


def summary(rows: list[Row]) -> list[str]:
    """A sentence on what separate() adds over apply_model."""
    by_key = {r.key: r.ours.p50 for r in rows}
    sep, app = by_key.get("separate"), by_key.get("apply1")
    if not (sep and app):
        return []
    return [
        "",
        f"`separate()` / `apply_model` (ours, shifts=1, p50): {sep / app:.3f}"
        f" ({sep / app - 1:+.1%}).",
    ]


def render(run: Run) -> str:
    """The whole markdown report."""
    notes = Footnotes()
    body = [
        f"# mlx_audio_sts: HTDemucs against {PEER}",
        "",
        f"`mlx_audio_sts.apply_model` (MLX, CPU) against the official `demucs.apply.apply_model`"
        f" (PyTorch {TORCH_VERSION}, CPU) on the same htdemucs model, weights and input, side by"
        " side in one run (`tools/bench/bench_sts.py`).",
        "",
        *machine_section(run),
        *method_section(run.mode, run.quick),
        "## Results (seconds, lower is better)",
        "",
    ]
    if run.error:
        body.append(f"No results: {run.error}")
    else:
        body += table(run.rows, notes) + summary(run.rows)
    body += ["", *notes.lines()]
    return "\n".join(body).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def measure_all(run: Run) -> None:
    """Starts the worker (which writes the model), loads it for MLX and measures every row
    into ``run`` (or says in ``run.error`` why nothing could be measured)."""
    if run.state.python is None:
        run.error = f"{PEER} unavailable: {run.state.error}"
        return
    mix = make_signal(run.mode.seconds, SR, 2, SIGNAL_SEED)
    with tempfile.TemporaryDirectory(prefix="bench_sts_") as d:
        tmp = Path(d)
        np.save(tmp / "mix.npy", mix)
        print(f"building the reference model in {PEER} ...", file=sys.stderr)
        try:
            spec = {"th": str(tmp / "htdemucs.th"), "seed": MODEL_SEED,
                    "mix": str(tmp / "mix.npy"), "threads": THREADS}  # fmt: skip
            worker = LineWorker(run.state.python, WORKER, spec, CACHE / "demucs_worker.log")
        except (OSError, WorkerError, ValueError) as e:
            run.error = f"the {PEER} worker failed to start: {e}"
            return
        run.hello = worker.hello
        try:
            model = convert.load_th(tmp / "htdemucs.th")
            run.rows = run_rows(model, worker, mix, tmp, run.mode)
        finally:
            worker.close()


def main(argv: list[str] | None = None) -> int:
    """Sets up the demucs venv, measures, writes the report; 1 when outputs disagree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 s of audio, one timed round")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    state = setup_torch_peer(VENV, "demucs", DEMUCS_VERSION, "demucs.apply")
    run = Run(QUICK if args.quick else FULL, args.quick, state)
    measure_all(run)
    report = render(run)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}", file=sys.stderr)
    ok = not run.error and all(r.err is not None and r.err <= TOL for r in run.rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
