"""`make bench`: what the TTS servers add to Kokoro-82M's own speed (issue 17), on loopback.

Kokoro-82M at its official configuration with seeded random weights (MLX's initialisation,
the duration head set to a speaking rate as ``bench_tts.py`` does) and a random voice pack
saved as ``af_heart``, served from one :class:`~mlx_audio_tts.serving.ModelRegistry` by the
WebSocket server (``BackgroundServer``) and the REST/OpenAI server (``create_app`` under
uvicorn in a thread); the clients (``websockets``, ``httpx``) run in this process too.

1. Time to first audio for one sentence: the model called directly
   (``generate_audio_with_callback(..., model=...)["first_chunk_s"]``), the WebSocket server
   (``start_orpheus_stream`` sent -> first ``PCM0`` frame), and ``POST /v1/audio/speech``
   with ``stream=true`` in pcm, wav and mp3 (request sent -> first body bytes). Each round
   calls every path once, in turn; medians over the timed rounds.
2. Requests per second for short sentences: the same sentences called directly, and as
   non-streamed wav requests from 1 client and from 4 concurrent clients, with the
   registry's ``max_concurrent`` 1 (the default) and 2.

Writes ``docs/benchmarks_server.md`` (or ``--out``).

    uv run --all-packages python tools/bench/bench_server.py [--quick] [--out PATH]

A full run takes about 2-3 minutes on 2 cores; ``--quick`` (one round) only checks that the
script works.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# isort: off
import mlx_audio_io  # noqa: F401  (before mlx.core: the BLAS preload)
import mlx.core as mx

# isort: on
import httpx
import mlx_audio_tts
import numpy as np
import uvicorn
from bench_io import blas_state
from bench_sts import load_average
from bench_tts import MEAN_FRAMES, MODEL_SEED, vocab_for
from common import machine_line, version
from mlx_audio_tts import server as rest
from mlx_audio_tts.g2p import shared_g2p
from mlx_audio_tts.generate import generate_audio_with_callback
from mlx_audio_tts.models.kokoro import load_model
from mlx_audio_tts.models.kokoro.config import ModelConfig
from mlx_audio_tts.models.kokoro.load import save_model
from mlx_audio_tts.models.kokoro.model import KokoroModel
from mlx_audio_tts.orpheus_streaming_server import BackgroundServer, parse_frame
from mlx_audio_tts.serving import ModelRegistry
from websockets.sync.client import connect
from worker_loop import definitions_from

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "benchmarks_server.md"
PARITY = ROOT / "tools" / "parity" / "kokoro.py"
SENTENCE = "Hello there, this is a test of the streaming server."
SHORT = ("Hi.", "Okay.", "Thank you.", "Yes, please.", "Good morning.", "See you soon.",
         "No problem.", "Sounds good.", "Right away.", "Of course.")  # fmt: skip
BLOCK = 4  # requests per turn of a rate case
FORMATS = ("pcm", "wav", "mp3")
FIRST_BUDGET_S = 120  # keeps the whole run under 5 minutes on 2 busy cores
CONTROL_THREAD = "direct, in a worker thread (control)"


@dataclass(frozen=True)
class Mode:
    """Rounds: (warm-up, timed) for time to first audio; blocks of ``BLOCK`` requests per
    rate case."""

    first: tuple[int, int]
    rate_blocks: int


FULL = Mode((1, 5), 5)
QUICK = Mode((1, 1), 1)


@dataclass
class Run:
    """What one run measured: seconds per path for first audio, passes per rate case."""

    mode: Mode
    quick: bool
    first: dict[str, list[float]] = field(default_factory=dict)
    totals: dict[str, list[float]] = field(default_factory=dict)
    audio_s: float = 0.0
    ws_outside: list[float] = field(default_factory=list)
    rates: dict[str, list[float]] = field(default_factory=dict)
    rate_total: dict[str, float] = field(default_factory=dict)
    short_audio_s: float = 0.0
    phonemes: int = 0
    load: str = field(default_factory=load_average)
    load_end: str = ""
    started: str = field(
        default_factory=lambda: datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    )


# --- the model and the servers -------------------------------------------------------------


def build_folder(folder: Path) -> int:
    """Writes Kokoro-82M (official configuration, seeded random weights) and a random
    ``voices/af_heart.safetensors`` to ``folder``; returns the sentence's phoneme count."""
    g2p = shared_g2p("a")
    phonemes = [g2p(t) for t in (SENTENCE, *SHORT)]
    official = definitions_from(PARITY, ("VOCAB", "OFFICIAL"), {})["OFFICIAL"]
    mx.random.seed(MODEL_SEED)
    model = KokoroModel(ModelConfig.from_dict({**official, "vocab": vocab_for(*phonemes)}))
    mx.eval(model.parameters())
    predictor = model.predictor
    # random weights hold every phoneme ~25 frames; about MEAN_FRAMES is a speaking rate
    proj = predictor.duration_proj["linear_layer"]
    proj.weight = proj.weight * 0.05
    p = MEAN_FRAMES / model.config.max_dur
    proj.bias = mx.full(proj.bias.shape, float(np.log(p / (1 - p))))
    predictor.F0_proj.weight = predictor.F0_proj.weight * 0.2
    predictor.F0_proj.bias = mx.full(predictor.F0_proj.bias.shape, 140.0)  # voiced pitch
    save_model(model, folder)
    pack = np.random.default_rng(MODEL_SEED).standard_normal((510, 1, 256)).astype(np.float32)
    (folder / "voices").mkdir()
    mx.save_safetensors(str(folder / "voices" / "af_heart.safetensors"),
                        {"voice": mx.array(pack * 0.1)})  # fmt: skip
    return len(phonemes[0])


class Live:
    """The REST/OpenAI app under uvicorn in a background thread on 127.0.0.1, a free port."""

    def __init__(self, app) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="off")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


# --- time to first audio -------------------------------------------------------------------


def first_direct(model, text: str) -> tuple[float, float]:
    """``(first_chunk_s, total s)`` of the model called directly."""
    t0 = time.perf_counter()
    result = generate_audio_with_callback(text, lambda c, m: None, model=model, voice="af_heart")
    return result["first_chunk_s"], time.perf_counter() - t0


def first_ws(url: str, text: str) -> tuple[float, float, float, float]:
    """``(first frame s, stream_complete s, audio s, the server's own first_chunk_s)`` of
    one ``start_orpheus_stream``."""
    with connect(url, max_size=None) as ws:
        t0 = time.perf_counter()
        ws.send(json.dumps({"type": "start_orpheus_stream", "text": text, "voice": "af_heart"}))
        first, samples = None, 0
        while True:
            msg = ws.recv(timeout=120)
            if isinstance(msg, bytes):
                first = first if first is not None else time.perf_counter() - t0
                rate, audio = parse_frame(msg)
                samples += audio.shape[0]
                continue
            reply = json.loads(msg)
            if reply["type"] == "stream_complete":
                return first, time.perf_counter() - t0, samples / rate, reply["first_chunk_s"]
            if reply["type"] == "error":
                raise RuntimeError(f"the WebSocket server answered {reply}")


def first_http(client: httpx.Client, text: str, fmt: str) -> tuple[float, float]:
    """``(first body bytes s, last byte s)`` of a streamed ``/v1/audio/speech``."""
    body = {"model": "tts-1", "input": text, "voice": "af_heart", "response_format": fmt,
            "stream": True}  # fmt: skip
    t0 = time.perf_counter()
    first = None
    with client.stream("POST", "/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - t0
    return first, time.perf_counter() - t0


def ws_round(run: Run, url: str) -> tuple[float, float]:
    """:func:`first_ws`, keeping the part of its first audio spent outside the server's
    stream (client first frame - server ``first_chunk_s``)."""
    first, total, _, server_first = first_ws(url, SENTENCE)
    run.ws_outside.append(first - server_first)
    return first, total


def measure_first(run: Run, model, ws_url: str, client: httpx.Client) -> None:
    """Every path once per round, in turn; the warm-up rounds are dropped."""
    paths = {"direct": lambda: first_direct(model, SENTENCE),
             "websocket": lambda: ws_round(run, ws_url)}  # fmt: skip
    for fmt in FORMATS:
        paths[f"http {fmt}"] = lambda fmt=fmt: first_http(client, SENTENCE, fmt)
    # control: does running in another thread, as the registry does, change anything?
    worker = ThreadPoolExecutor(1, thread_name_prefix="direct")
    paths[CONTROL_THREAD] = lambda: worker.submit(first_direct, model, SENTENCE).result()
    run.audio_s = first_ws(ws_url, SENTENCE)[2]
    warm, timed = run.mode.first
    with worker:
        rounds(run, paths, warm, timed)


def rounds(run: Run, paths: dict, warm: int, timed: int) -> None:
    """Calls every path in ``paths`` (``() -> (first s, total s)``) once per round; past
    ``FIRST_BUDGET_S`` (a loaded machine) no new round starts once 3 are timed."""
    t0 = time.perf_counter()
    for i in range(warm + timed):
        if i - warm >= 3 and time.perf_counter() - t0 > FIRST_BUDGET_S:
            break
        for name, call in paths.items():
            first, total = call()
            if i < warm and name == "websocket":
                run.ws_outside.pop()
            if i >= warm:
                run.first.setdefault(name, []).append(first)
                run.totals.setdefault(name, []).append(total)
        print(f"round {i}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in run.first.items()),
              file=sys.stderr)  # fmt: skip


# --- requests per second -------------------------------------------------------------------


def texts(n: int, start: int = 0) -> list[str]:
    """``n`` short sentences from the ``start``-th on, cycling through ``SHORT``."""
    return [SHORT[i % len(SHORT)] for i in range(start, start + n)]


def rate_direct(model, n: int, start: int = 0) -> tuple[float, None]:
    """``(calls per second, None)`` of ``n`` direct calls one after another."""
    t0 = time.perf_counter()
    for text in texts(n, start):
        generate_audio_with_callback(text, lambda c, m: None, model=model, voice="af_heart")
    return n / (time.perf_counter() - t0), None


def rate_http(url: str, clients: int, n: int, start: int = 0) -> tuple[float, float]:
    """``(requests per second, audio seconds per request)`` of non-streamed wav requests,
    the sentences shared out among ``clients`` threads, each with its own connection."""
    todo = iter(texts(n, start))
    lock = threading.Lock()
    audio_s: list[float] = []

    def client_loop() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while True:
                with lock:
                    text = next(todo, None)
                if text is None:
                    return
                r = c.post("/v1/audio/speech", json={"input": text, "voice": "af_heart",
                                                     "response_format": "wav"})  # fmt: skip
                r.raise_for_status()
                audio_s.append((len(r.content) - 44) / 2 / 24000)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client_loop) for _ in range(clients)]:
            f.result()
    return n / (time.perf_counter() - t0), sum(audio_s) / len(audio_s)


def measure_rates(run: Run, model, urls: dict[int, str]) -> None:
    """Direct (main and worker thread), 1 and 4 clients at ``max_concurrent`` 1, 4 at 2:
    each case one warm-up request per client, then blocks of ``BLOCK`` requests, the cases
    taking turns block by block (so the machine's load drifting hits them alike)."""
    worker = ThreadPoolExecutor(1, thread_name_prefix="direct")
    cases = {"direct": lambda n, k: rate_direct(model, n, k),
             CONTROL_THREAD: lambda n, k: worker.submit(rate_direct, model, n, k).result(),
             "1 client, max_concurrent=1": lambda n, k: rate_http(urls[1], 1, n, k),
             "4 clients, max_concurrent=1": lambda n, k: rate_http(urls[1], 4, n, k),
             "4 clients, max_concurrent=2": lambda n, k: rate_http(urls[2], 4, n, k)}  # fmt: skip
    with worker:
        for name, call in cases.items():
            call(4 if name.startswith("4 clients") else 1, 0)
        seconds = dict.fromkeys(cases, 0.0)
        for block in range(run.mode.rate_blocks):
            for name, call in cases.items():
                rate, audio_s = call(BLOCK, block * BLOCK)
                seconds[name] += BLOCK / rate
                run.short_audio_s = audio_s or run.short_audio_s
                run.rates.setdefault(name, []).append(rate)
            shown = ", ".join(f"{k} {v[-1]:.2f}/s" for k, v in run.rates.items())
            print(f"block {block}: {shown}", file=sys.stderr)
        run.rate_total = {name: BLOCK * run.mode.rate_blocks / t for name, t in seconds.items()}


# --- the report ----------------------------------------------------------------------------


def render(run: Run) -> str:
    """The markdown report."""
    med = statistics.median
    direct = med(run.first["direct"])
    lines = [
        "# mlx_audio_tts: what the servers add (Kokoro-82M)",
        "",
        "Time to first audio and requests per second through the WebSocket server and the"
        " REST/OpenAI server, against the model called directly in the same process"
        " (`tools/bench/bench_server.py`, issue 17).",
        "",
        "## Machine",
        "",
        machine_line(),
        f"- Python {platform.python_version()}; mlx {version('mlx')}; mlx_audio_tts (this repo)"
        f" {mlx_audio_tts.__version__}; fastapi {version('fastapi')}; uvicorn"
        f" {version('uvicorn')}; httpx {version('httpx')}; websockets {version('websockets')};"
        f" BLAS preload: {blas_state()}",
        f"- Load average (1, 5, 15 min) at start: {run.load}; at the end: {run.load_end}",
        f"- Date: {run.started}",
        "",
        "## Method",
        "",
        "- Model: `KokoroModel` with the official Kokoro-82M configuration (`OFFICIAL` in"
        f" `tools/parity/kokoro.py`), MLX's initialisation seeded ({MODEL_SEED}), the duration"
        f" head set to about {MEAN_FRAMES} frames (25 ms) per token and the F0 head to voiced"
        " pitch, as `bench_tts.py` does; a random voice pack saved as `af_heart`. MLX on the"
        " CPU. One model object serves every path: the direct calls and both servers'"
        " registries.",
        "- Servers: the WebSocket server (`BackgroundServer(registry, port=0)`) and the"
        " REST/OpenAI app (`create_app(registry)` under uvicorn in a thread), on 127.0.0.1."
        " The clients (`websockets.sync`, `httpx`, threads for concurrent clients) run in the"
        " same process, so they share its cores and its GIL with the servers.",
        f"- First audio: {SENTENCE!r} ({run.phonemes} phonemes, {run.audio_s:.2f} s of"
        " audio), default options (one segment per sentence, 150 ms chunks). direct:"
        " `generate_audio_with_callback(text, cb, model=model, voice='af_heart')` and its"
        " `first_chunk_s`; websocket: a new connection, `start_orpheus_stream` sent -> first"
        " binary `PCM0` frame received; http: `POST /v1/audio/speech` with `stream: true`,"
        " request sent (keep-alive connection) -> first body bytes (`iter_raw`); whole"
        " sentence: until the last frame or byte. Kokoro makes a sentence in one piece, so its"
        " first 150 ms chunk comes when the whole sentence is made. Each round"
        " runs the paths in the table's order; rounds: warm-up"
        f" {run.mode.first[0]}, timed {len(run.first['direct'])} (up to"
        f" {run.mode.first[1]}; fewer when the rounds ran past {FIRST_BUDGET_S} s); cells"
        " are the median (min) over the timed rounds. Overhead:"
        " the path's median minus the direct median, and (paired) the median over rounds of"
        " the path's time minus the direct call's in the same round, which cancels the"
        " machine's load drifting between rounds.",
        f"- Rate: {BLOCK * run.mode.rate_blocks} requests per case for short sentences"
        f" ({', '.join(SHORT[:4])} ...,"
        f" {run.short_audio_s:.2f} s of audio each on average), non-streamed `wav`; direct:"
        " the same sentences through `generate_audio_with_callback` one after another."
        " Concurrent clients share the sentences out; `max_concurrent` is the registry's"
        " number of generations running at once (separate registries and servers, the same"
        " model). Each case: one warm-up request per client, then"
        f" {run.mode.rate_blocks} blocks of {BLOCK} requests, the cases taking turns block by"
        " block, so that the machine's load drifting hits them alike. req/s = all requests /"
        " the blocks' summed wall time (in brackets: the slowest and fastest block); server /"
        " direct = its req/s over the direct calls'.",
        "- Control: the direct call made from a long-lived worker thread, as the servers'"
        " registry runs generations (one thread per slot): it tells whether a gap between the"
        " direct call and a server comes from the thread.",
        "- Command: `make bench`, or `uv run --all-packages python tools/bench/bench_server.py`.",
    ]
    if run.quick:
        lines.append("- **This is a `--quick` run** (one round): not for quoting.")
    lines += [
        "",
        "## Time to first audio (ms, lower is better)",
        "",
        "| path | first audio p50 (min) | overhead: p50 - direct p50 | overhead, paired"
        " | whole sentence p50 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, times in run.first.items():
        over = paired = "—"
        if name != "direct":
            over = f"{(med(times) - direct) * 1e3:+.0f}"
            diffs = [t - d for t, d in zip(times, run.first["direct"], strict=True)]
            paired = f"{med(diffs) * 1e3:+.0f}"
        lines.append(f"| {name} | {med(times) * 1e3:.0f} ({min(times) * 1e3:.0f}) | {over}"
                     f" | {paired} | {med(run.totals[name]) * 1e3:.0f} |")  # fmt: skip
    spread = [t * 1e3 for t in run.first["direct"]]
    outside = [t * 1e3 for t in run.ws_outside]
    lines += [
        "",
        f"The direct call alone took {min(spread):.0f}-{max(spread):.0f} ms over the timed"
        " rounds: differences between the paths smaller than that spread are the shared"
        " machine's load moving, not the servers. A measure free of it, within each WebSocket"
        " stream: the client's first frame minus the server's own `first_chunk_s` (from"
        " `stream_started` to its first frame) leaves what happens outside generation (reading"
        " and checking the message, admission, `stream_started`, the frame over loopback):"
        f" {statistics.median(outside):.1f} ms p50, {max(outside):.1f} ms at most.",
    ]
    base = run.rate_total["direct"]
    lines += [
        "",
        "## Requests per second, short sentences (higher is better)",
        "",
        "| case | req/s (blocks) | server / direct |",
        "|---|---:|---:|",
    ]
    for name, rates in run.rates.items():
        total = run.rate_total[name]
        ratio = "—" if name == "direct" else f"{total / base:.2f}"
        lines.append(f"| {name} | {total:.2f} ({min(rates):.2f}-{max(rates):.2f}) | {ratio} |")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Builds the model, starts the servers, measures, writes the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed round")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report path")
    args = parser.parse_args(argv)
    run = Run(QUICK if args.quick else FULL, args.quick)
    with tempfile.TemporaryDirectory(prefix="bench_server_") as d:
        folder = Path(d)
        run.phonemes = build_folder(folder)
        model = load_model(folder)
        registries = {n: ModelRegistry([str(folder)], max_concurrent=n, max_waiting=64,
                                       loader=lambda _name: model) for n in (1, 2)}  # fmt: skip
        lives = {
            n: Live(rest.create_app(r, output_dir=folder / "out")) for n, r in registries.items()
        }
        try:
            with BackgroundServer(registries[1]) as ws, \
                    httpx.Client(base_url=lives[1].url, timeout=120) as client:  # fmt: skip
                measure_first(run, model, ws.url, client)
            measure_rates(run, model, {n: live.url for n, live in lives.items()})
        finally:
            for live in lives.values():
                live.close()
            for r in registries.values():
                r.close()
    run.load_end = load_average()
    report = render(run)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
