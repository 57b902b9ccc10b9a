"""The WebSocket streaming server (mlx_audio_tts.orpheus_streaming_server) on loopback, driven
by real `websockets` clients and by the browser page in headless Chromium: the seed's
protocol, the PCM0 frames (every sample equal to stream_chunks' for the same model), cancel,
clients that leave, text fed as an LLM writes it, every refusal, and a load of 16 clients.

Kokoro is the reduced fixture with its harmonic source's random phases and noise set to zero
(so that the server's audio can be compared with a direct call); Orpheus is the tiny model of
test_orpheus.py with its tokens scripted (optionally slowed down, to cancel mid-stream)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlx_audio_io  # noqa: F401

import mlx.core as mx
import numpy as np
import pytest
from mlx_audio_tts import orpheus_streaming_server
from mlx_audio_tts.generate import stream_chunks
from mlx_audio_tts.models.kokoro.istftnet import SourceModuleHnNSF
from mlx_audio_tts.models.orpheus import model as orpheus
from mlx_audio_tts.models.orpheus import protocol as p
from mlx_audio_tts.orpheus_streaming_server import (
    BackgroundServer,
    SentenceSplitter,
    _Connection,
    _Stream,
    build_parser,
    parse_frame,
    pcm_frame,
)
from mlx_audio_tts.serving import ModelRegistry
from mlx_audio_tts.utils import load_model, materialize
from test_orpheus import _frames, _scripted
from test_orpheus import folder as orpheus_folder  # noqa: F401  (a fixture)
from websockets.sync.client import connect

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "artifacts"
ENDS = ("stream_complete", "stream_cancelled", "error")


_DELAYS: dict[int, list[float]] = {}


class _QuietSource(SourceModuleHnNSF):
    """Kokoro's harmonic source with zero initial phases and zero noise: deterministic; its
    n-th call (sentence) waits ``_DELAYS[id(self)][n]`` s when given."""

    def __call__(self, f0, phase0=None, noise=None):
        if _DELAYS.get(id(self)):
            time.sleep(_DELAYS[id(self)].pop(0))
        b, n, _ = f0.shape
        return super().__call__(f0, mx.zeros((b, self.harmonics)), mx.zeros((b, n, self.harmonics)))


@pytest.fixture(scope="module")
def kokoro(kokoro_folder):
    model = load_model(kokoro_folder)
    source = model.decoder.generator.m_source
    quiet = _QuietSource(source.sample_rate, source.upsample_scale, source.harmonics - 1)
    quiet.update(source.parameters())
    model.decoder.generator.m_source = quiet
    return materialize(model)


def _kokoro_registry(kokoro, kokoro_folder, **kwargs) -> ModelRegistry:
    return ModelRegistry([str(kokoro_folder)], loader=lambda name: kokoro, **kwargs)


@pytest.fixture(scope="module")
def kokoro_server(kokoro, kokoro_folder):
    registry = _kokoro_registry(kokoro, kokoro_folder)
    with BackgroundServer(registry, max_text_chars=200) as server:
        server.registry = registry
        yield server


def _direct(kokoro, kokoro_folder, text, **kwargs) -> list[np.ndarray]:
    return [c for c, _ in stream_chunks(text, model_path=str(kokoro_folder), model=kokoro,
                                        voice=kwargs.pop("voice", "af_heart"), **kwargs)
            if len(c)]  # fmt: skip


def _orpheus(folder):
    return materialize(orpheus.load_model(folder))


def _scripted_model(m, frames=20, delay=0.0, sampled=None):
    """``m`` speaking the same scripted frames at every call, ``delay`` s per token."""
    real = orpheus.OrpheusModel.generate_tokens.__get__(m)
    script = [t for f in _frames(frames) for t in p.frame_tokens(*f)] + [p.END_OF_SPEECH, 1, 2]

    def generate_tokens(*args, **kwargs):
        inner = _scripted(script)

        def sample(logprobs):
            if delay:
                time.sleep(delay)
            if sampled is not None:
                sampled.append(1)
            return inner(logprobs)

        return real(*args, **{**kwargs, "sampler": sample})

    m.generate_tokens = generate_tokens
    return m


#: Orpheus chunks as the model makes them (21 tokens: 3 frames, about 0.2 s apart here)
SLOW = {"voice": "tara", "max_tokens": 4000, "respect_source_boundaries": True}


def _start(text="Hi.", **kwargs) -> str:
    msg = {"type": "start_orpheus_stream", "text": text, "voice": "af_heart", "temperature": 0.6,
           "chunk_tokens": 21, "ultra_low_latency": True, **kwargs}  # fmt: skip
    return json.dumps(msg)


def _collect(ws, ends=ENDS, timeout=60):
    """JSON messages and ``(rate, samples)`` frames until one of ``ends``."""
    messages, frames = [], []
    while True:
        m = ws.recv(timeout=timeout)
        if isinstance(m, bytes):
            frames.append(parse_frame(m))
            continue
        messages.append(json.loads(m))
        if messages[-1]["type"] in ends:
            return messages, frames


def _reply(ws) -> dict:
    m = ws.recv(timeout=30)
    assert isinstance(m, str), "expected a JSON message, got a frame"
    return json.loads(m)


def _slot_free(registry, timeout=5.0) -> bool:
    """Whether every generation slot is free again within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if registry.active == 0:
            return True
        time.sleep(0.02)
    return False


# the frame and the sentence splitter


def test_pcm0_frame_layout():
    x = np.linspace(-1, 1, 5, dtype=np.float32)
    data = pcm_frame(x, 24000)
    assert data[:16] == b"PCM0" + struct.pack("<III", 24000, 5, 1)
    assert data[16:] == x.astype("<f4").tobytes()
    rate, y = parse_frame(data)
    assert rate == 24000 and y.shape == (5, 1) and y.dtype == np.float32
    np.testing.assert_array_equal(y[:, 0], x)
    for bad, message in [(b"PCMX" + data[4:], "not a PCM0"), (data[:-1], "payload has 19")]:
        with pytest.raises(ValueError, match=message):
            parse_frame(bad)


def test_sentence_splitter():
    s = SentenceSplitter()
    assert s.push("Hello there") == [] and s.pending == "Hello there"
    assert s.push(". It costs 3.") == ["Hello there."]
    assert s.push("14 dollars, said Dr. Smith and J. Doe! Really") == [
        "It costs 3.14 dollars, said Dr. Smith and J. Doe!"
    ]
    assert s.push('? "Yes." And\nthen') == ["Really?", '"Yes."', "And"]
    assert s.push(" e.g. this…  ") == ["then e.g. this…"]
    assert s.flush() == "" and s.push("the end") == [] and s.flush() == "the end"
    long = SentenceSplitter(max_pending_chars=30)
    out = long.push("one two three four five, six seven eight nine ten")
    assert out == ["one two three four five,"] and long.pending == " six seven eight nine ten"


# the protocol


def test_kokoro_stream_round_trip(kokoro_server, kokoro, kokoro_folder):
    text = "Hi. Go now."
    expected = _direct(kokoro, kokoro_folder, text)
    with connect(kokoro_server.url) as ws:
        ws.send(_start(text))
        messages, frames = _collect(ws)
    started, done = messages[0], messages[-1]
    assert [m["type"] for m in messages] == ["stream_started", "stream_complete"]
    assert started["voice"] == "af_heart" and started["sample_rate"] == 24000
    assert started["num_channels"] == 1 and started["chunk_tokens"] == 21
    # a local folder by its name, never its path
    assert started["model"] == kokoro_folder.name and started["mode"] == "text"
    assert {r for r, _ in frames} == {24000} and {f.shape[1] for _, f in frames} == {1}
    # every chunk, in order, equal to stream_chunks' for the same model and text
    assert [len(f) for _, f in frames] == [len(c) for c in expected]
    got = np.concatenate([f[:, 0] for _, f in frames])
    np.testing.assert_allclose(got, np.concatenate(expected), atol=1e-6)
    assert done["chunks"] == len(frames) and done["samples"] == len(got)
    assert 0 < done["first_chunk_s"] <= done["elapsed_s"]
    assert done["stream_id"] == started["stream_id"] == 1


def test_orpheus_stream_equals_stream_chunks(orpheus_folder):  # noqa: F811
    model = _scripted_model(_orpheus(orpheus_folder), frames=20)
    registry = ModelRegistry(["test/orpheus-tiny"], loader=lambda name: model)
    options = {"chunk_tokens": 14, "output_chunk_duration_ms": 10, "seed": 5, "voice": "leo"}
    with BackgroundServer(registry) as server, connect(server.url) as ws:
        ws.send(_start("Hello there.", **options))
        messages, frames = _collect(ws)
        ws.send(_start("Hello there.", voice="af_heart"))
        refused = _reply(ws)
    assert [m["type"] for m in messages] == ["stream_started", "stream_complete"]
    assert messages[0]["voice"] == "leo" and messages[0]["chunk_tokens"] == 14
    direct = [c for c, _ in stream_chunks(
        "Hello there.", "test/orpheus-tiny", "leo", 14, output_chunk_duration_ms=10, seed=5,
        model=model) if len(c)]  # fmt: skip
    assert len(frames) == len(direct) > 3
    for (_, got), want in zip(frames, direct, strict=True):
        np.testing.assert_array_equal(got[:, 0], want)
    assert refused["type"] == "error" and refused["code"] == "unknown_voice"
    assert "tara" in refused["message"]


def test_cancel_stops_generation_within_one_chunk(orpheus_folder):  # noqa: F811
    sampled = []
    model = _scripted_model(_orpheus(orpheus_folder), frames=300, sampled=sampled)
    registry = ModelRegistry(["tiny"], loader=lambda name: model)
    with BackgroundServer(registry) as server, connect(server.url) as ws:
        ws.send(_start("Hello there.", **SLOW))
        assert _reply(ws)["type"] == "stream_started"
        before = [ws.recv(timeout=30) for _ in range(2)]
        assert all(isinstance(f, bytes) for f in before)
        ws.send(json.dumps({"type": "cancel"}))
        messages, late = _collect(ws)
        assert [m["type"] for m in messages] == ["stream_cancelled"]
        assert len(late) <= 1  # at most the frame already on its way
        assert messages[0]["chunks"] == 2 + len(late)
        assert _slot_free(registry, 2.0), "the worker kept its generation slot"
        n = len(sampled)
        time.sleep(0.3)
        assert len(sampled) == n, "the worker kept sampling after the cancel"
        assert n < 300 * 7 / 2
        # the connection goes on: a new stream, cancelled at once
        ws.send(json.dumps({"type": "cancel"}))
        assert _reply(ws)["code"] == "not_streaming"
        ws.send(_start("Again.", **SLOW))
        assert _reply(ws)["stream_id"] == 2
        assert isinstance(ws.recv(timeout=30), bytes)
        ws.send(json.dumps({"type": "cancel"}))
        assert _collect(ws)[0][-1]["type"] == "stream_cancelled"


def test_client_leaving_mid_stream_frees_its_generation(orpheus_folder):  # noqa: F811
    sampled = []
    model = _scripted_model(_orpheus(orpheus_folder), frames=300, sampled=sampled)
    registry = ModelRegistry(["tiny"], loader=lambda name: model, max_waiting=0)
    with BackgroundServer(registry) as server:
        for abrupt in (False, True):
            with connect(server.url) as ws:
                ws.send(_start("Hello there.", **SLOW))
                assert _reply(ws)["type"] == "stream_started"
                assert isinstance(ws.recv(timeout=30), bytes)
                if abrupt:  # the TCP connection dropped, no closing handshake
                    ws.socket.shutdown(socket.SHUT_RDWR)
                    ws.socket.close()
            assert _slot_free(registry, 3.0), f"slot still taken (abrupt={abrupt})"
            n = len(sampled)
            time.sleep(0.3)
            assert len(sampled) == n
        assert not server.server.connections
        # busy: one generation at a time, none waiting
        with connect(server.url) as a, connect(server.url) as b:
            a.send(_start("Hello there.", **SLOW))
            assert _reply(a)["type"] == "stream_started"
            assert isinstance(a.recv(timeout=30), bytes)
            b.send(_start("Hello there.", voice="tara"))
            messages, _ = _collect(b)
            assert [m["type"] for m in messages] == ["stream_started", "error"]
            assert messages[-1]["code"] == "busy" and messages[-1]["stream_id"] == 1
            a.send(json.dumps({"type": "cancel"}))
            assert _collect(a)[0][-1]["type"] == "stream_cancelled"


def test_append_text_speaks_each_sentence_as_it_completes(kokoro_server, kokoro, kokoro_folder):
    sentences = ["Hi.", "Yo.", "Ok"]
    expected = [c for s in sentences for c in _direct(kokoro, kokoro_folder, s)]
    with connect(kokoro_server.url) as ws:
        ws.send(json.dumps({"type": "start_text_stream", "voice": "af_heart"}))
        started = _reply(ws)
        assert started["type"] == "stream_started" and started["mode"] == "text_stream"
        ws.send(json.dumps({"type": "append_text", "text": "Hi"}))
        ws.send(json.dumps({"type": "append_text", "text": ". Y"}))
        first = ws.recv(timeout=30)  # speech began before the text was complete
        assert isinstance(first, bytes)
        for piece in ["o", ".", " Ok"]:
            ws.send(json.dumps({"type": "append_text", "text": piece}))
        ws.send(json.dumps({"type": "end_text"}))
        ws.send(json.dumps({"type": "append_text", "text": "More."}))
        messages, frames = _collect(ws, ends=("stream_complete",))
    assert [m["type"] for m in messages] == ["error", "stream_complete"]
    assert messages[0]["code"] == "text_ended"
    frames = [parse_frame(first)] + frames
    assert [len(f) for _, f in frames] == [len(c) for c in expected]
    got = np.concatenate([f[:, 0] for _, f in frames])
    np.testing.assert_allclose(got, np.concatenate(expected), atol=1e-6)
    assert messages[-1]["chunks"] == len(frames)


def test_first_append_opens_the_stream(kokoro_server, kokoro, kokoro_folder):
    expected = _direct(kokoro, kokoro_folder, "Yes.")
    with connect(kokoro_server.url) as ws:
        ws.send(json.dumps({"type": "append_text", "text": "Yes", "voice": "af_heart"}))
        assert _reply(ws)["mode"] == "text_stream"
        ws.send(json.dumps({"type": "append_text", "text": "."}))
        ws.send(json.dumps({"type": "end_text"}))
        messages, frames = _collect(ws)
    assert messages[-1]["type"] == "stream_complete"
    np.testing.assert_allclose(np.concatenate([f[:, 0] for _, f in frames]),
                               np.concatenate(expected), atol=1e-6)  # fmt: skip


REFUSED = [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_request"),
    (b"\x00\x01", "bad_request"),
    (json.dumps({"type": "speak"}), "unknown_type"),
    (json.dumps({"text": "Hi."}), "unknown_type"),
    (json.dumps({"type": ["cancel"]}), "unknown_type"),
    (_start(""), "bad_request"),
    (_start("   "), "bad_request"),
    (_start(None), "bad_request"),
    (_start(["Hi."]), "bad_request"),
    (_start("x" * 201), "too_large"),
    (_start(chunk_tokens=20), "bad_request"),
    (_start(chunk_tokens=0), "bad_request"),
    (_start(chunk_tokens=-7), "bad_request"),
    (_start(chunk_tokens="21"), "bad_request"),
    (_start(chunk_tokens=True), "bad_request"),
    (_start(temperature=-0.1), "bad_request"),
    (_start(temperature="hot"), "bad_request"),
    (_start(temperature=float("nan")), "bad_request"),
    (_start(voice="nobody"), "unknown_voice"),
    (_start(voice="../../etc/passwd"), "unknown_voice"),
    (_start(model="someone/else"), "unknown_model"),
    (_start(model="/etc"), "unknown_model"),
    (_start(speed=3), "bad_request"),
    (_start(top_p=0), "bad_request"),
    (_start(max_tokens=3), "bad_request"),
    (_start(seed=-1), "bad_request"),
    (_start(output_chunk_duration_ms=0), "bad_request"),
    (_start(ultra_low_latency="yes"), "bad_request"),
    (_start(lang_code="q"), "bad_request"),
    (json.dumps({"type": "cancel"}), "not_streaming"),
    (json.dumps({"type": "end_text"}), "not_streaming"),
    (json.dumps({"type": "append_text", "text": 5}), "bad_request"),
]


def test_every_refusal_is_a_json_error_and_the_connection_goes_on(kokoro_server, kokoro,
                                                                   kokoro_folder):  # fmt: skip
    with connect(kokoro_server.url) as ws:
        for message, code in REFUSED:
            ws.send(message)
            reply = _reply(ws)
            assert reply["type"] == "error" and reply["code"] == code, (message, reply)
            assert reply["message"]
        # a second start, or an append, while a stream runs: refused; the stream goes on
        ws.send(_start("Hi."))
        assert _reply(ws)["type"] == "stream_started"
        ws.send(_start("Hi."))
        ws.send(json.dumps({"type": "append_text", "text": "Hi."}))
        messages, frames = _collect(ws, ends=("stream_complete",))
    assert [m["type"] for m in messages] == ["error", "error", "stream_complete"]
    assert [m["code"] for m in messages[:2]] == ["already_streaming"] * 2
    np.testing.assert_allclose(
        np.concatenate([f[:, 0] for _, f in frames]),
        np.concatenate(_direct(kokoro, kokoro_folder, "Hi.")),
        atol=1e-6,
    )


def test_messages_over_max_size_close_the_connection(kokoro_server):
    from websockets.exceptions import ConnectionClosedError

    with connect(kokoro_server.url, max_size=None) as ws:
        ws.send(_start("x" * 100_000))  # under max_size, over max_text_chars: a JSON error
        assert _reply(ws)["code"] == "too_large"
        ws.send(_start("x" * (2**20 + 10)))
        with pytest.raises(ConnectionClosedError) as e:
            ws.recv(timeout=10)
    assert e.value.rcvd.code == 1009
    with connect(kokoro_server.url) as ws:  # the server goes on
        ws.send(json.dumps({"type": "cancel"}))
        assert _reply(ws)["code"] == "not_streaming"


def test_the_page_is_served_on_the_same_port(kokoro_server):
    base = kokoro_server.http_url
    for path in ["", "websocket_test_client.html", "?ws=x"]:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
            page = r.read().decode()
        assert "AudioWorklet" in page and 'content="same-origin"' in page
    for path in ["favicon.ico", "static/websocket_test_client.html", "..%2fserving.py"]:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + path, timeout=10)
        assert e.value.code == 404


def test_command_line(capsys):
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.model, args.no_preload) == ("127.0.0.1", 8765, None, False)
    assert args.max_concurrent == 1 and args.max_text_chars == 5000
    args = build_parser().parse_args(["--model", "a", "--model", "b", "--no-preload"])
    assert args.model == ["a", "b"] and args.no_preload
    assert orpheus_streaming_server.main(["--max-text-chars", "0"]) == 2
    assert "--max-text-chars must be at least 1" in capsys.readouterr().err
    out = subprocess.run([sys.executable, "-m", "mlx_audio_tts.orpheus_streaming_server",
                          "--help"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0 and "--no-preload" in out.stdout


# load


def _run(coro):
    """``asyncio.run(coro)`` in a thread of its own: Playwright's sync API (the ``browser``
    fixture, once started) keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def _client(url, text="Hi."):
    from websockets.asyncio.client import connect as aconnect

    async with aconnect(url) as ws:
        await ws.send(_start(text))
        messages, frames = [], []
        async for m in ws:
            if isinstance(m, bytes):
                frames.append(parse_frame(m)[1][:, 0])
            else:
                messages.append(json.loads(m))
                if messages[-1]["type"] in ENDS:
                    return messages, frames


async def _killed_client(url):
    from websockets.asyncio.client import connect as aconnect

    ws = await aconnect(url)
    await ws.send(_start("Hi. Go now. Yes."))
    while not isinstance(await ws.recv(), bytes):
        pass
    ws.transport.abort()  # the TCP socket closed under the connection


def test_sixteen_clients_at_once(kokoro, kokoro_folder):
    registry = _kokoro_registry(kokoro, kokoro_folder)
    expected = _direct(kokoro, kokoro_folder, "Hi.")
    with BackgroundServer(registry) as server:
        _run(_client(server.url))  # warm up
        rss, threads = _rss_mib(), len(os.listdir("/proc/self/task"))

        async def load():
            return await asyncio.gather(_killed_client(server.url),
                                        *[_client(server.url) for _ in range(16)])  # fmt: skip

        t = time.perf_counter()
        results = _run(load())[1:]
        took = time.perf_counter() - t
        for messages, frames in results:
            assert [m["type"] for m in messages] == ["stream_started", "stream_complete"]
            assert [len(f) for f in frames] == [len(c) for c in expected]
            np.testing.assert_allclose(np.concatenate(frames), np.concatenate(expected),
                                       atol=1e-6)  # fmt: skip
        assert took < 120
        assert _slot_free(registry, 5.0)
        messages, _ = _run(_client(server.url))  # still serving
        assert messages[-1]["type"] == "stream_complete"
        deadline = time.monotonic() + 5
        while server.server.connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.server.connections
        gc.collect()
        kept = [o for o in gc.get_objects() if isinstance(o, (_Stream, _Connection))]
        grown = _rss_mib() - rss
        threads = len(os.listdir("/proc/self/task")) - threads
    print(f"16 clients: {took:.1f} s, RSS {rss:.0f} MiB +{grown:.0f} MiB, +{threads} threads")
    # every connection and stream (their queues, frames, chunks) is freed
    assert not kept, f"{len(kept)} connections or streams are still referenced"
    # generations run on the registry's long-lived workers (MLX keeps a stream, an OS thread,
    # per thread that used it): no thread per request; measured +57-83 MiB over 16 streams
    assert threads <= 2, f"{threads} threads more after 16 streams"
    assert grown < 256, f"RSS grew by {grown:.0f} MiB over 16 streams"


# the browser client


def test_browser_client_plays_every_sample(browser, kokoro_server, kokoro, kokoro_folder):
    expected = np.concatenate(_direct(kokoro, kokoro_folder, "Hi."))
    page = browser.new_page()
    try:
        page.goto(kokoro_server.http_url, timeout=15_000)
        assert page.input_value("#url") == kokoro_server.url
        assert page.input_value("#buffer") == "0.2"
        page.fill("#voice", "af_heart")
        page.fill("#text", "Hi.")
        page.click("#connect")
        page.wait_for_function("document.querySelector('#status').textContent === 'connected'",
                               timeout=10_000)  # fmt: skip
        page.click("#start")
        page.wait_for_function("window.streamState === 'complete'", timeout=30_000)
        received = np.asarray(page.evaluate("window.received"), dtype=np.float32)
        np.testing.assert_array_equal(received, expected)  # every sample, in order
        page.wait_for_function("window.stats.playbackDone", timeout=30_000)
        stats = page.evaluate("window.stats")
        assert stats["played"] == len(expected)
        assert stats["underflows"] == 0
        assert page.text_content("#underflows") == "0"
        assert page.text_content("#status").startswith("complete")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ws_client.png"), full_page=True)
    finally:
        page.close()


def test_browser_client_reports_underflows_and_stops(browser, kokoro_folder):
    """Audio that comes slower than it plays (the second sentence 3.5 s after the first's
    3.1 s) runs the buffer dry: the page counts it; Stop cancels the stream."""
    model = load_model(kokoro_folder)
    source = model.decoder.generator.m_source
    slow = _QuietSource(source.sample_rate, source.upsample_scale, source.harmonics - 1)
    slow.update(source.parameters())
    _DELAYS[id(slow)] = [0.0, 3.5]
    model.decoder.generator.m_source = slow
    registry = _kokoro_registry(materialize(model), kokoro_folder)
    page = browser.new_page()
    try:
        with BackgroundServer(registry) as server:
            page.goto(server.http_url, timeout=15_000)
            page.fill("#voice", "af_heart")
            page.fill("#text", "Hi. Yo.")
            page.click("#connect")
            page.wait_for_function("!document.querySelector('#start').disabled", timeout=10_000)
            page.click("#start")
            page.wait_for_function("window.stats.underflows >= 1", timeout=30_000)
            assert int(page.text_content("#underflows")) >= 1
            assert window_state(page) == "streaming"
            page.click("#stop")
            page.wait_for_function("window.streamState === 'cancelled'", timeout=10_000)
            assert _slot_free(registry, 5.0)
    finally:
        page.close()


def window_state(page) -> str:
    return page.evaluate("window.streamState")
