"""`make bench`: Kokoro-82M text to speech, mlx_audio_tts (MLX, CPU) against the official
kokoro 0.9.4 (PyTorch, CPU), same configuration, same weights, same phonemes, in one run.

kokoro runs in its own venv (``.bench/kokoro-venv``: ``pip install torch==2.13.0
kokoro==0.9.4``, created on first use; torch never enters the workspace's environment) in a
subprocess, ``kokoro_worker.py``. The worker builds ``kokoro.KModel`` with the official
configuration and seeded random weights (``tools/parity/kokoro.py``), the duration head set to
a speaking rate, and saves it in hexgrad's layout; this script loads that folder with
``mlx_audio_tts.models.kokoro.load_model``, so both sides hold the same weights. Calls
alternate ours, kokoro, ours, kokoro ...; both sides' predicted durations must agree token for
token (the audio itself depends on the harmonic source's random phases). Also: time to first
audio through ``KokoroPipeline`` (normalisation, misaki G2P), and what 8- and 4-bit
quantization cost in speed and fidelity. Writes ``docs/benchmarks_tts.md`` (or ``--out``).

Usage::

    uv run --all-packages python tools/bench/bench_tts.py [--quick] [--out PATH]

A full run takes about 10 minutes on 2 cores; ``--quick`` (one timed round, no warm-up) only
checks that the script works.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# isort: off
import mlx_audio_io as aio  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
import mlx_audio_tts
import numpy as np
from bench_io import blas_state
from bench_sts import (
    LineWorker,
    Result,
    WorkerError,
    alternate,
    cell,
    load_average,
    ours_call,
    paired,
    rtf,
    setup_torch_peer,
)
from common import Anchor, Footnotes, machine_line, version
from mlx_audio_tts.g2p import load_g2p
from mlx_audio_tts.models.kokoro import KokoroPipeline, load_model
from mlx_audio_tts.models.kokoro.voices import load_voice, style_for
from mlx_audio_tts.utils import quantize_model

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".bench"
DEFAULT_OUT = ROOT / "docs" / "benchmarks_tts.md"
WORKER = Path(__file__).resolve().with_name("kokoro_worker.py")
VENV = CACHE / "kokoro-venv"
VOICE = ROOT / "tests" / "fixtures" / "kokoro" / "voices" / "af_heart.pt"
TORCH_VERSION = "2.13.0"
KOKORO_VERSION = "0.9.4"
PEER = f"kokoro {KOKORO_VERSION}"
OURS = "mlx_audio_tts"
THREADS = 2  # torch threads: the target machine's 2 cores
MODEL_SEED = 0
MEAN_FRAMES = 2.7  # frames (25 ms) per token: about 15 phonemes a second, a speaking rate
SR = 24000
# the base symbols of tools/parity/kokoro.py's VOCAB; the paragraph's other symbols follow
BASE_SYMBOLS = ";:,.!?abcdefhijklmnopqrstuvwxyzɑɐɒæβɔəɚɛɜɪʊʌˈˌː "
PARAGRAPH = (  # about 20 s of speech
    "The old lighthouse stood at the edge of the harbour for more than 150 years. Every night "
    "its keeper climbed the 212 steps, trimmed the wick and watched the ships come home. On "
    "March 5th, 1998, the light was finally automated."
)


@dataclass(frozen=True)
class Mode:
    """Rounds per row: (warm-up, timed)."""

    runs: tuple[int, int]


FULL = Mode((1, 3))
QUICK = Mode((0, 1))


@dataclass
class Row:
    """One row: what both sides synthesise, their timings, and whether their durations agree."""

    label: str
    audio_s: float
    ours: Result = field(default_factory=Result)
    peer: Result | None = None
    agree: str = "—"


@dataclass
class Run:
    """One benchmark run: its settings, the kokoro venv and worker, what it measured."""

    mode: Mode
    quick: bool
    state: Anchor
    hello: dict = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    quant: list[dict] = field(default_factory=list)
    first_audio: dict = field(default_factory=dict)
    phonemes: dict = field(default_factory=dict)
    error: str | None = None
    load: str = field(default_factory=load_average)
    started: str = field(
        default_factory=lambda: datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    )


def vocab_for(*phoneme_strings: str) -> dict[str, int]:
    """A vocabulary holding every symbol the benchmark's phonemes use (ids < 178). The real
    one comes with the released config.json; the compute does not depend on the ids."""
    symbols = list(dict.fromkeys(BASE_SYMBOLS + "".join(phoneme_strings)))
    return {s: i for i, s in enumerate(symbols, 1)}


def synth_rows(model, worker: LineWorker, pack, texts: dict, mode: Mode) -> list[Row]:
    """One row per phoneme string: ours and kokoro in turn, durations compared."""
    rows = []
    for label, phonemes in texts.items():
        style = style_for(pack, len(phonemes))
        replies: list[dict] = []

        def peer(_save, phonemes=phonemes, replies=replies):
            replies.append(worker.ask({"op": "synth", "phonemes": phonemes, "speed": 1.0}))
            return replies[-1]["ms"] / 1e3

        def ours(phonemes=phonemes, style=style):
            return model(phonemes, style)

        print(f"{label} ...", file=sys.stderr)
        mine, theirs, first = alternate(ours_call(ours), peer, *mode.runs)
        row = Row(label, 0.0, mine, theirs)
        if first is not None:
            row.audio_s = first.audio.shape[0] / SR
        if first is not None and replies:
            same = np.array_equal(np.asarray(first.pred_dur), np.asarray(replies[0]["pred_dur"]))
            row.agree = "equal" if same else "**differ**"
        for name, res in ((OURS, row.ours), (PEER, row.peer)):
            shown = res.error or f"p50 {res.p50:.2f} s, min {res.min:.2f} s"
            print(f"  {name:<14} {shown}", file=sys.stderr)
        rows.append(row)
    return rows


def first_audio(model, g2p, mode: Mode) -> dict:
    """Seconds from calling a sentence-splitting KokoroPipeline to its first segment
    (normalisation, G2P and the first sentence's synthesis), median over the rounds."""
    pipeline = KokoroPipeline("a", model=model, g2p=g2p)
    times = []
    for _ in range(sum(mode.runs)):
        t0 = time.perf_counter()
        result = next(iter(pipeline(PARAGRAPH, str(VOICE), split_pattern=r"(?<=[.!?])\s+")))
        mx.eval(result.audio)
        times.append(time.perf_counter() - t0)
    timed = times[mode.runs[0] :]
    return {"p50": float(np.median(timed)), "min": min(timed), "graphemes": result.graphemes}


def _durations(model, phonemes: str, style) -> np.ndarray:
    return np.asarray(model.predict(model.tokenize(phonemes), style)[2])


def _stages(model, phonemes: str, style, pred_dur=None, har=None) -> dict:
    """A run with fixed sources (zero initial phases and noise) capturing every stage; with
    ``har``, the generator also runs on that source."""
    pred_dur = _durations(model, phonemes, style) if pred_dur is None else pred_dur
    samples = int(pred_dur.sum()) * model.config.hop_samples
    cap: dict = {}
    model(phonemes, style, pred_dur=pred_dur, phase0=mx.zeros((1, 9)),
          noise=mx.zeros((1, samples, 9)), capture=cap)  # fmt: skip
    out = {k: np.asarray(cap[k]) for k in ("d", "duration", "F0", "N", "features", "har", "audio")}
    out["pred_dur"] = np.asarray(pred_dur)
    if har is not None:
        s = style[:, : model.config.style_dim]
        out["audio_same_source"] = np.asarray(
            model.decoder.generator(cap["features"], s, har=mx.array(har))[0]
        )
    return out


def quantization_rows(folder: Path, reference, pack, phonemes: str, mode: Mode) -> list[dict]:
    """8- and 4-bit copies of the model: paragraph time and each stage's error against the
    float model (max |q - f| / max |f|), durations held to the float model's."""
    style = style_for(pack, len(phonemes))
    want = _stages(reference, phonemes, style)
    rows = []
    for bits in (8, 4):
        model = load_model(folder)
        quantize_model(model, model.config, 64, bits)
        got = _stages(model, phonemes, style, want["pred_dur"], har=want["har"])
        errors = {k: float(np.abs(got[k] - want[k]).max() / np.abs(want[k]).max())
                  for k in ("d", "duration", "F0", "N", "features")}  # fmt: skip
        errors["audio (same source)"] = float(
            np.abs(got["audio_same_source"] - want["audio"]).max() / np.abs(want["audio"]).max()
        )
        errors["durations changed"] = int(
            np.sum(_durations(model, phonemes, style) != want["pred_dur"])
        )
        res, _, _ = alternate(ours_call(lambda model=model: model(phonemes, style)), None,
                              *mode.runs)  # fmt: skip
        rows.append({"bits": bits, "result": res, "errors": errors})
        print(f"{bits}-bit: {res.error or f'p50 {res.p50:.2f} s'}, {errors}", file=sys.stderr)
    return rows


def measure_all(run: Run) -> None:
    """G2P of the paragraph, the worker (which writes the model), then every row."""
    if run.state.python is None:
        run.error = f"{PEER} unavailable: {run.state.error}"
        return
    t0 = time.perf_counter()
    g2p = load_g2p("a")
    run.phonemes["g2p_load_s"] = time.perf_counter() - t0
    pieces = KokoroPipeline("a", model=False, g2p=g2p).phonemize(PARAGRAPH)
    if len(pieces) != 1:
        run.error = f"the paragraph did not fit one segment ({len(pieces)} pieces)"
        return
    paragraph = pieces[0][1]
    first = KokoroPipeline("a", model=False, g2p=g2p).phonemize(
        re.split(r"(?<=[.!?])\s+", PARAGRAPH)[0]
    )[0][1]
    run.phonemes.update(paragraph=len(paragraph), first=len(first))
    with tempfile.TemporaryDirectory(prefix="bench_tts_") as d:
        folder = Path(d)
        spec = {"folder": str(folder), "seed": MODEL_SEED, "threads": THREADS,
                "vocab": vocab_for(paragraph, first), "mean_frames": MEAN_FRAMES,
                "voice": str(VOICE)}  # fmt: skip
        print(f"building the reference model in {PEER} ...", file=sys.stderr)
        try:
            worker = LineWorker(run.state.python, WORKER, spec, CACHE / "kokoro_worker.log")
        except (OSError, WorkerError, ValueError) as e:
            run.error = f"the {PEER} worker failed to start: {e}"
            return
        run.hello = worker.hello
        try:
            model = load_model(folder)
            pack = load_voice(VOICE)
            texts = {"paragraph, one segment": paragraph, "first sentence alone": first}
            run.rows = synth_rows(model, worker, pack, texts, run.mode)
        finally:
            worker.close()
        run.first_audio = first_audio(model, g2p, run.mode)
        run.quant = quantization_rows(folder, model, pack, paragraph, run.mode)


def render(run: Run) -> str:
    """The markdown report."""
    notes = Footnotes()
    hello, ph = run.hello, run.phonemes
    where = f"- {PEER} (PyPI, own venv `.bench/{VENV.name}`"
    if run.state.python is None:
        peer = f"{where}): unavailable ({run.state.error})"
    else:
        probe = run.state.probe
        peer = (
            f"{where}, Python {probe.get('python')}): {run.state.setup}; torch "
            f"{probe.get('torch')}; CPU, torch threads: {hello.get('threads', 'n/a')}"
        )
    lines = [
        f"# mlx_audio_tts: Kokoro-82M against {PEER}",
        "",
        f"`KokoroModel` (MLX, CPU) against the official `kokoro.KModel` (PyTorch {TORCH_VERSION},"
        " CPU) on the same model, weights, phonemes and voice, side by side in one run"
        " (`tools/bench/bench_tts.py`).",
        "",
        "## Machine",
        "",
        machine_line(),
        f"- Python {platform.python_version()}; mlx {version('mlx')}; mlx_audio_tts (this repo)"
        f" {mlx_audio_tts.__version__}; numpy {np.__version__}; BLAS preload: {blas_state()}",
        peer,
        f"- Load average at start (1, 5, 15 min): {run.load}",
        f"- Date: {run.started}",
        "",
        "## Method",
        "",
        "- Model: `kokoro.KModel` with the official Kokoro-82M configuration (`OFFICIAL` in"
        f" `tools/parity/kokoro.py`) and seeded random weights (seed {MODEL_SEED}), its duration"
        f" head set to about {MEAN_FRAMES} frames per token (random weights otherwise hold every"
        " phoneme for about 25 frames, 0.6 s), saved in hexgrad's layout by"
        " `tools/bench/kokoro_worker.py`; ours loads that folder (`load_model`). Voice:"
        " hexgrad's `af_heart.pt`.",
        f"- Text: a {len(PARAGRAPH.split())}-word English paragraph, phonemized once by our"
        f" pipeline (normalisation + misaki): {ph.get('paragraph')} phonemes, one segment as"
        " kokoro's `KPipeline` makes it (up to 510); the first sentence alone is"
        f" {ph.get('first')} phonemes. Both sides synthesise the same phoneme strings with"
        " `speed=1`.",
        "- kokoro: `model(phonemes, pack[len(phonemes) - 1], 1.0, return_output=True)` under"
        f" `torch.no_grad()`, `torch.set_num_threads({THREADS})`, in its own process; the worker"
        " times the call itself. Ours: `model(phonemes, style_for(pack, len(phonemes)))`, MLX on"
        " the CPU, output forced with `mx.eval`.",
        f"- Order: each round calls ours, then kokoro; rounds (warm-up, timed): {run.mode.runs}."
        " Cells are p50 (min) in seconds. RTF = audio seconds / p50 seconds (above 1: faster"
        " than real time); torch / ours = kokoro p50 / our p50 (above 1: we are faster);"
        " paired = median over rounds of kokoro's time / ours in the same round.",
        "- Agreement: both sides' predicted frames per token for the first call, token by"
        " token (the audio itself depends on the harmonic source's random phases; stage-by-stage"
        " agreement is in [parity.md](parity.md)).",
        "- Command: `make bench`, or `uv run --all-packages python tools/bench/bench_tts.py`.",
    ]
    if run.quick:
        lines.append("- **This is a `--quick` run** (one round, no warm-up): not for quoting.")
    lines += ["", "## Results (seconds, lower is better)", ""]
    if run.error:
        lines.append(f"No results: {run.error}")
        return "\n".join(lines).rstrip() + "\n"
    lines += [
        f"| case | audio s | {OURS} p50 (min) | {OURS} RTF | {PEER} p50 (min) | {PEER} RTF"
        " | torch / ours | paired | durations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in run.rows:
        ratio = "n/a"
        if r.peer is not None and r.peer.p50 and r.ours.p50:
            ratio = f"{r.peer.p50 / r.ours.p50:.2f}x"
        lines.append(
            f"| {r.label} | {r.audio_s:.1f} | {cell(r.ours, notes)} | {rtf(r.audio_s, r.ours)}"
            f" | {cell(r.peer, notes)} | {rtf(r.audio_s, r.peer)} | {ratio}"
            f" | {paired(r.ours, r.peer)} | {r.agree} |"
        )
    fa = run.first_audio
    lines += [
        "",
        "## Time to first audio",
        "",
        f"`KokoroPipeline(...)(paragraph, 'af_heart', split_pattern=r'(?<=[.!?])\\s+')` until"
        " its first segment is synthesised (English normalisation, misaki G2P of the first"
        f" sentence, the model): p50 {fa['p50']:.2f} s (min {fa['min']:.2f} s), for"
        f" {fa['graphemes']!r}. Loading the English G2P (misaki lexicons, spaCy tagger) once"
        f" took {ph['g2p_load_s']:.1f} s. The peer's number for the same sentence is the"
        " `first sentence alone` row above (its G2P needs spaCy's model from the network).",
        "",
        "## Quantization",
        "",
        "`quantize_model(model, config, 64, bits)` (linear and embedding layers: ALBERT, the"
        " projections, the AdaIN style layers; convolutions and LSTMs stay float), paragraph"
        " row, ours only. Errors are max |quantized - float| / max |float| per stage, with the"
        " float model's durations and zero source noise; `audio (same source)` runs the"
        " quantized generator on the float model's harmonic source (the source's phase follows"
        " F0, so any F0 change moves the waveform, not the sound).",
        "",
        "| bits | p50 (min) s | RTF | d | duration | F0 | N | decoder features |"
        " audio (same source) | durations changed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    audio_s = run.rows[0].audio_s if run.rows else 0.0
    for q in run.quant:
        e = q["errors"]
        lines.append(
            f"| {q['bits']} | {cell(q['result'], notes)} | {rtf(audio_s, q['result'])}"
            f" | {e['d']:.1e} | {e['duration']:.1e} | {e['F0']:.1e} | {e['N']:.1e}"
            f" | {e['features']:.1e} | {e['audio (same source)']:.1e}"
            f" | {e['durations changed']} of {ph.get('paragraph', 0) + 2} |"
        )
    lines += ["", *notes.lines()]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Sets up the kokoro venv, measures, writes the report; 1 when durations disagree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed round, no warm-up")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    state = setup_torch_peer(VENV, "kokoro", KOKORO_VERSION, "kokoro")
    run = Run(QUICK if args.quick else FULL, args.quick, state)
    measure_all(run)
    report = render(run)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}", file=sys.stderr)
    ok = not run.error and all(r.agree == "equal" for r in run.rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
