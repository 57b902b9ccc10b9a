"""The REST/OpenAI server and its page, live on loopback (uvicorn in a thread, real httpx
clients, headless chromium), serving the small Kokoro fixture."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlx_audio_io as aio

import httpx
import numpy as np
import pytest
import uvicorn
from mlx_audio_tts import server as srv
from mlx_audio_tts.serving import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "artifacts"
SHORT = "Hi."
TWO = "Hi there. Bye now. So long."


class Live:
    """A uvicorn server for ``app`` in a background thread on 127.0.0.1, a free port."""

    def __init__(self, app):
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="off")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class FakePlayer:
    """sounddevice's play/stop, recording what it is asked."""

    def __init__(self):
        self.played, self.stops = [], 0

    def play(self, audio, rate):
        self.played.append((len(audio), rate))

    def stop(self):
        self.stops += 1


@pytest.fixture(scope="module")
def registry(kokoro_folder):
    return ModelRegistry([str(kokoro_folder)], max_concurrent=1, max_waiting=64)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def live(registry, outputs):
    app = srv.create_app(registry, output_dir=outputs, max_text_chars=300,
                         max_upload_bytes=16384)  # fmt: skip
    server = Live(app)
    yield server
    server.close()


@pytest.fixture(scope="module")
def client(live):
    with httpx.Client(base_url=live.url, timeout=60) as c:
        yield c


def speech(client, **body) -> httpx.Response:
    payload = {"model": "tts-1", "input": SHORT, "voice": "af_heart", "speed": 2.0, **body}
    return client.post("/v1/audio/speech", json=payload)


def decode(data: bytes, ext: str, tmp_path: Path) -> np.ndarray:
    path = tmp_path / f"got.{ext}"
    path.write_bytes(data)
    audio, _ = aio.load(str(path), sr=24000)
    return np.asarray(audio)[:, 0]


def assert_json_error(r: httpx.Response, status: int | tuple = (400, 499)) -> dict:
    if isinstance(status, int):
        assert r.status_code == status, r.text
    else:
        assert status[0] <= r.status_code <= status[1], (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["error"]["message"]
    return body


def raw_request(port: int, target: str, method: str = "GET", body: bytes = b"",
                headers: str = "") -> tuple[int, bytes]:  # fmt: skip
    """What httpx cannot send: request targets with ``../`` (it normalises them away)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                  f"Content-Length: {len(body)}\r\n{headers}\r\n".encode() + body)  # fmt: skip
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


# --- the page, info and voices ------------------------------------------------------------


def test_page_and_static_files_are_ours_and_offline(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "orb.js", "style.css"):
        f = client.get(f"/static/{name}")
        assert f.status_code == 200, name
        assert "http://" not in f.text and "https://" not in f.text  # no CDN
    assert "https://" not in r.text and "http://" not in r.text


def test_info_models_and_voices(client, kokoro_folder):
    info = client.get("/info").json()
    assert info["models"] == [kokoro_folder.name] and info["max_text_chars"] == 300
    assert str(kokoro_folder.parent) not in json.dumps(info)  # no local paths leak
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids[0] == kokoro_folder.name and "tts-1" in ids and "tts-1-hd" in ids
    for model in (None, "tts-1", kokoro_folder.name):
        params = {"model": model} if model else {}
        v = client.get("/v1/audio/voices", params=params).json()
        assert v["voices"] == ["af_bella", "af_heart"] and v["default"] == "af_heart"
    assert_json_error(client.get("/v1/audio/voices", params={"model": "/etc"}), 400)


# --- the seed's endpoints -------------------------------------------------------------------


def test_tts_writes_a_file_that_audio_serves(client, outputs, tmp_path):
    r = client.post("/tts", data={"text": SHORT, "voice": "af_bella", "speed": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    name = body["filename"]
    assert (outputs / name).is_file() and body["voice"] == "af_bella" and body["speed"] == 2
    got = client.get(f"/audio/{name}")
    assert got.status_code == 200 and got.headers["content-type"] == "audio/wav"
    audio = decode(got.content, "wav", tmp_path)
    assert abs(len(audio) / 24000 - body["duration_s"]) < 1e-3 and np.abs(audio).max() > 0
    # defaults: the model's default voice, speed 1
    r = client.post("/tts", data={"text": SHORT})
    assert r.status_code == 200 and r.json()["voice"] == "af_heart" and r.json()["speed"] == 1


@pytest.mark.parametrize(
    "form",
    [
        {"text": "x" * 301},
        {"text": "   "},
        {"voice": "af_nobody"},
        {"speed": "0.4"},
        {"speed": "2.5"},
        {"speed": "fast"},
        {"speed": "nan"},
        {"model": "some/other-model"},
        {"model": "../../etc"},
    ],
)
def test_tts_bad_input_is_a_json_4xx(client, form):
    assert_json_error(client.post("/tts", data={"text": SHORT, **form}), 400)


def test_tts_without_text_is_a_json_4xx(client):
    assert_json_error(client.post("/tts", data={"voice": "af_heart"}), 400)


TRAVERSALS = [
    "/audio/../../../../etc/passwd",
    "/audio/..%2F..%2F..%2Fetc%2Fpasswd",
    "/audio/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/audio/%2Fetc%2Fpasswd",
    "/audio//etc/passwd",
    "/audio/..",
    "/audio/.hidden",
    "/audio/..%5c..%5cwindows",
    "/audio/outside_link.wav",
    "/audio/no_such_file.wav",
    "/audio/a%00.wav",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_audio_refuses_paths_outside_the_output_folder(live, outputs, tmp_path_factory, target):
    secret = tmp_path_factory.mktemp("secret") / "secret.wav"
    aio.save(str(secret), np.zeros(100, np.float32), 24000)
    link = outputs / "outside_link.wav"
    if not link.is_symlink():
        link.symlink_to(secret)
    status, body = raw_request(live.port, target)
    assert 400 <= status < 500, (target, status)
    assert b"RIFF" not in body and b"root:" not in body
    assert json.loads(body)["error"]["message"]


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", "outside_link.wav",
                                  "a/b.wav", "..\\x.wav", "", "x" * 300])  # fmt: skip
def test_play_refuses_paths_outside_the_output_folder(client, outputs, name):
    assert_json_error(client.post("/play", data={"filename": name}))


@pytest.fixture(scope="module")
def made(client) -> str:
    """A file /tts wrote."""
    return client.post("/tts", data={"text": SHORT, "speed": "2"}).json()["filename"]


def test_play_without_a_sound_device_is_a_clear_json_error(client, made):
    name = made
    r = client.post("/play", data={"filename": name})
    if r.status_code == 200:  # a machine with a sound device
        assert r.json()["status"] == "playing"
    else:
        body = assert_json_error(r, 503)
        assert body["error"]["code"] == "no_audio_device"
    r = client.post("/stop")
    assert r.status_code == 200 and r.json()["status"] == "stopped"


def test_play_and_stop_drive_the_player(registry, outputs, made):
    fake = FakePlayer()
    app = srv.create_app(registry, output_dir=outputs, player=lambda: fake)
    live = Live(app)
    try:
        with httpx.Client(base_url=live.url, timeout=60) as c:
            name = made
            r = c.post("/play", data={"filename": name})
            assert r.json() == {"status": "playing", "filename": name}
            assert fake.played and fake.played[0][1] == 24000
            assert c.post("/stop").json() == {"status": "stopped", "was_playing": True}
            assert c.post("/stop").json()["was_playing"] is False
    finally:
        live.close()


def test_open_output_folder_only_on_loopback(registry, outputs, monkeypatch, live):
    opened = []
    monkeypatch.setattr(srv, "_open_folder", opened.append)
    with httpx.Client(base_url=live.url) as c:
        r = c.post("/open_output_folder")
        assert r.status_code == 200 and r.json()["path"] == str(outputs) and opened == [outputs]

        def broken(path):
            raise RuntimeError("xdg-open is not installed")

        monkeypatch.setattr(srv, "_open_folder", broken)
        body = assert_json_error(c.post("/open_output_folder"), 500)
        assert "xdg-open" in body["error"]["message"]
    public = Live(srv.create_app(registry, output_dir=outputs, host="0.0.0.0"))
    try:
        with httpx.Client(base_url=public.url) as c:
            assert_json_error(c.post("/open_output_folder"), 403)
            assert c.get("/info").json()["can_open_folder"] is False
    finally:
        public.close()


# --- the OpenAI-compatible API ---------------------------------------------------------------


@pytest.mark.parametrize("fmt,ext", [("mp3", "mp3"), ("opus", "opus"), ("aac", "aac"),
                                     ("flac", "flac"), ("wav", "wav"), ("pcm", None)])  # fmt: skip
def test_speech_in_every_format(client, tmp_path, fmt, ext):
    r = speech(client, response_format=fmt, instructions="Speak calmly.")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == srv.FORMATS[fmt]
    if fmt == "pcm":
        audio = np.frombuffer(r.content, "<i2")
    else:
        audio = decode(r.content, ext, tmp_path)
    assert len(audio) > 2400 and np.abs(audio).max() > 0
    if fmt == "wav":  # exact sizes when not streamed
        assert struct.unpack("<I", r.content[4:8])[0] == len(r.content) - 8


def test_speech_defaults_and_openai_voice_names(client):
    r = client.post("/v1/audio/speech", json={"input": SHORT})  # tts-1, mp3, default voice
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    body = assert_json_error(speech(client, voice="alloy"), 400)  # no af_alloy here
    assert "af_heart" in body["error"]["message"]  # it lists the voices


def test_streamed_wav_arrives_in_chunks_and_decodes_as_one_file(client, tmp_path):
    whole = speech(client, input=TWO, response_format="wav")
    assert whole.status_code == 200
    arrivals, parts = [], []
    start = time.perf_counter()
    payload = {"model": "tts-1", "input": TWO, "voice": "af_heart", "response_format": "wav",
               "stream": True, "speed": 2.0}  # fmt: skip
    with client.stream("POST", "/v1/audio/speech", json=payload) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        assert r.headers.get("transfer-encoding") == "chunked"
        for part in r.iter_raw():
            arrivals.append(time.perf_counter() - start)
            parts.append(part)
    data = b"".join(parts)
    assert len(parts) >= 3
    assert arrivals[0] < arrivals[-1] - 0.05, "the first bytes came only at the end"
    assert data.count(b"RIFF") == 1 and struct.unpack("<I", data[4:8])[0] == 0xFFFFFFFF
    streamed = decode(data, "wav", tmp_path)
    assert len(streamed) == len(decode(whole.content, "wav", tmp_path))


@pytest.fixture(scope="module")
def two_samples(client) -> int:
    """How many samples TWO comes out as (raw PCM, not streamed)."""
    return len(speech(client, input=TWO, response_format="pcm").content) // 2


@pytest.mark.parametrize("fmt,ext", [("mp3", "mp3"), ("aac", "aac"), ("pcm", None)])
def test_stream_query_flag_gives_one_decodable_stream(client, tmp_path, two_samples, fmt, ext):
    r = client.post("/v1/audio/speech", params={"stream": "true"},
                    json={"input": TWO, "voice": "af_heart", "response_format": fmt,
                          "speed": 2.0})  # fmt: skip
    assert r.status_code == 200 and r.headers.get("transfer-encoding") == "chunked"
    n = len(r.content) // 2 if fmt == "pcm" else len(decode(r.content, ext, tmp_path))
    # lossy codecs add their priming and padding (no gapless tag in a stream)
    assert two_samples <= n <= two_samples + 4000


@pytest.mark.parametrize(
    "body",
    [
        {"input": "x" * 301},
        {"input": ""},
        {"input": 5},
        {"voice": "af_nobody"},
        {"voice": "af_heart,af_nobody"},
        {"speed": 0.25},
        {"speed": 4},
        {"speed": "fast"},
        {"model": "gpt-9"},
        {"response_format": "ogg"},
        {"response_format": "wav; rm -rf /"},
        {"stream": "maybe"},
    ],
)
def test_speech_bad_input_is_a_json_4xx(client, body):
    assert_json_error(speech(client, **body), 400)


def test_speech_malformed_or_missing_json_is_a_json_4xx(client):
    r = client.post("/v1/audio/speech", content=b"{not json",
                    headers={"content-type": "application/json"})  # fmt: skip
    assert_json_error(r, 400)
    assert_json_error(client.post("/v1/audio/speech", json={"voice": "af_heart"}), 400)
    assert_json_error(client.post("/v1/audio/speech", json=[1, 2]), 400)
    assert_json_error(client.get("/v1/audio/speech"), 405)
    assert_json_error(client.get("/no/such/page"), 404)


def test_request_bodies_are_size_limited(live, client):
    big = {"input": "x" * 20000}
    assert_json_error(client.post("/v1/audio/speech", json=big), 413)

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"x" * 1000

    r = client.post("/tts", content=chunks(),
                    headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert_json_error(r, 413)
    status, _ = raw_request(live.port, "/tts", "POST", b"", "Content-Length: 99999999\r\n")
    assert status == 400 or status == 413  # h11 may refuse the duplicate header first


def test_cors_is_closed_by_default_and_opens_when_asked(client, registry, outputs):
    origin = {"Origin": "https://evil.example"}
    r = client.get("/v1/models", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/v1/audio/speech", headers={
        **origin, "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert "access-control-allow-origin" not in pre.headers
    opened = Live(srv.create_app(registry, output_dir=outputs,
                                 cors_origins=["https://app.example"]))  # fmt: skip
    try:
        with httpx.Client(base_url=opened.url) as c:
            r = c.get("/v1/models", headers={"Origin": "https://app.example"})
            assert r.headers["access-control-allow-origin"] == "https://app.example"
            r = c.get("/v1/models", headers=origin)
            assert "access-control-allow-origin" not in r.headers
    finally:
        opened.close()


def test_loopback_server_refuses_foreign_host_headers(client):
    assert_json_error(client.get("/v1/models", headers={"Host": "evil.example"}), 400)
    assert client.get("/v1/models", headers={"Host": "localhost:1234"}).status_code == 200


def test_busy_server_answers_503(kokoro_folder, outputs):
    small = ModelRegistry([str(kokoro_folder)], max_concurrent=1, max_waiting=0)
    live = Live(srv.create_app(small, output_dir=outputs))

    async def burst():
        async with httpx.AsyncClient(base_url=live.url, timeout=60) as c:
            body = {"input": TWO, "voice": "af_heart", "response_format": "pcm", "speed": 2}
            return await asyncio.gather(*[c.post("/v1/audio/speech", json=body)
                                          for _ in range(3)])  # fmt: skip

    try:
        codes = sorted(r.status_code for r in asyncio.run(burst()))
    finally:
        live.close()
    assert codes[0] == 200 and codes[-1] == 503


def test_client_gone_mid_stream_stops_the_generation(kokoro_folder, outputs):
    one = ModelRegistry([str(kokoro_folder)], max_concurrent=1, max_waiting=0)
    live = Live(srv.create_app(one, output_dir=outputs))
    long = " ".join(["Hi there."] * 40)  # about 20 s of generation
    try:
        with httpx.Client(base_url=live.url, timeout=60) as c:
            body = {"input": long, "voice": "af_heart", "response_format": "pcm", "stream": True}
            with c.stream("POST", "/v1/audio/speech", json=body) as r:
                assert r.status_code == 200
                next(r.iter_raw())
            gone = time.perf_counter()  # the connection is closed here
            while True:  # the only slot frees once the generation notices
                r = c.post("/v1/audio/speech", json={"input": SHORT, "response_format": "pcm"})
                if r.status_code == 200:
                    break
                assert r.status_code == 503
                assert time.perf_counter() - gone < 5, "the generation went on without a client"
                time.sleep(0.1)
    finally:
        live.close()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def test_32_concurrent_requests_complete_and_memory_returns(live):
    async def burst(n: int):
        async with httpx.AsyncClient(base_url=live.url, timeout=120) as c:
            body = {"input": "Hi.", "voice": "af_heart", "response_format": "pcm", "speed": 2.0}
            return await asyncio.gather(*[c.post("/v1/audio/speech", json=body)
                                          for _ in range(n)])  # fmt: skip

    def timed_burst():
        start = time.perf_counter()
        answers = asyncio.run(burst(32))
        took = time.perf_counter() - start
        assert [r.status_code for r in answers] == [200] * 32
        assert all(len(r.content) > 1000 for r in answers)
        assert took < 45, f"32 requests took {took:.1f} s"

    timed_burst()  # the first also fills the allocators' and MLX's caches
    gc.collect()
    before = _rss_mb()
    timed_burst()
    gc.collect()
    grown = _rss_mb() - before
    assert grown < 64, f"RSS grew {grown:.0f} MB over 32 more requests (from {before:.0f} MB)"


# --- the page in a browser ------------------------------------------------------------------


def test_page_generates_plays_and_the_orb_reacts(live, browser):
    page = browser.new_page(viewport={"width": 1200, "height": 820})  # the page's own CSP
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type in ("error", "warning") and "GL Driver Message" not in m.text
            else 0
        ),
    )
    page.on("requestfailed", lambda r: errors.append(f"{r.url} failed"))
    page.on("response", lambda r: errors.append(f"{r.url}: {r.status}") if r.status >= 400 else 0)
    page.goto(live.url + "/")
    page.wait_for_function("() => document.getElementById('voice').options.length > 0")
    voices = page.eval_on_selector_all("#voice option", "os => os.map(o => o.value)")
    assert voices == ["af_bella", "af_heart"]
    assert page.input_value("#voice") == "af_heart"
    page.fill("#text", SHORT)
    page.fill("#speed", "2")
    page.click("#generate")
    page.wait_for_function("() => document.body.dataset.audio === 'playing'", timeout=60000)
    first = page.eval_on_selector("#player", "a => a.currentTime")
    page.wait_for_function(f"() => document.getElementById('player').currentTime > {first} + 0.3")
    page.wait_for_function("() => Number(document.getElementById('orb').dataset.level) > 0.02")
    lit = page.evaluate(
        """() => {
        const c = document.getElementById('orb');
        const gl = c.getContext('webgl');
        const copy = document.createElement('canvas');
        copy.width = c.width; copy.height = c.height;
        const g = copy.getContext('2d');
        g.drawImage(c, 0, 0);
        const px = g.getImageData(0, 0, c.width, c.height).data;
        let on = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) on++;
        return {webgl: !!gl, lit: on / (px.length / 4)};
    }"""
    )
    assert lit["webgl"] and lit["lit"] > 0.05, lit
    assert "s of audio" in page.inner_text("#status")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "server_page.png"))
    page.wait_for_function("() => document.body.dataset.audio === 'ended'", timeout=60000)
    assert not errors, errors
    page.close()


# --- the command line --------------------------------------------------------------------------


def test_parser_defaults_and_bad_limits():
    args = srv.build_parser().parse_args([])
    assert (args.host, args.port, args.models, args.max_text_chars) == ("127.0.0.1", 8000,
                                                                        None, 5000)  # fmt: skip
    assert args.cors_origin == [] and not args.no_preload
    args = srv.build_parser().parse_args(["--model", "a", "--model", "b", "--cors-origin", "x"])
    assert args.models == ["a", "b"] and args.cors_origin == ["x"]
    assert srv.main(["--max-text-chars", "0"]) == 2


def test_module_runs_as_a_program():
    r = subprocess.run([sys.executable, "-m", "mlx_audio_tts.server", "--help"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0 and "--max-text-chars" in r.stdout and "--cors-origin" in r.stdout


def test_output_folder_falls_back_when_home_is_not_writable(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: blocker))
    folder = srv.default_output_dir()
    assert folder.is_dir() and os.access(folder, os.W_OK)
    assert not str(folder).startswith(str(blocker))
