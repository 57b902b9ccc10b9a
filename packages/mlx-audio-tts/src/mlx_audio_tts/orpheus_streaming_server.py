"""The WebSocket streaming TTS server (the seed's ``orpheus_streaming_server``): JSON control
messages in; ``PCM0`` binary frames (float32, 24 kHz, mono) and JSON status out, for every
model a :class:`~mlx_audio_tts.serving.ModelRegistry` serves (Orpheus and Kokoro).

Beyond the seed: ``cancel`` (barge-in), text fed sentence by sentence as an LLM writes it
(``start_text_stream`` / ``append_text`` / ``end_text``), and the browser client served on the
same port over plain HTTP (``GET /``). The protocol is documented in ``docs/websocket_server.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import numbers
import re
import struct
import sys
import threading
import time
from importlib import resources

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

import numpy as np

from .serving import Busy, ModelRegistry

__all__ = [
    "DEFAULT_MODEL",
    "BackgroundServer",
    "SentenceSplitter",
    "StreamingServer",
    "build_parser",
    "main",
    "parse_frame",
    "pcm_frame",
    "serve",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "mlx-community/orpheus-3b-0.1-ft-4bit"
#: ``b'PCM0' | u32 sample_rate | u32 num_samples | u32 num_channels``, little-endian
HEADER = struct.Struct("<4sIII")
MAGIC = b"PCM0"
PAGE = "websocket_test_client.html"
PAGE_PATHS = ("/", "/" + PAGE)
LANG_CODES = ("a", "b", "e", "f", "h", "i", "p", "j", "z")  # Kokoro's pipelines


def pcm_frame(chunk, sample_rate: int) -> bytes:
    """One binary frame: the ``PCM0`` header, then the samples as little-endian float32.

    Args:
        chunk: Mono audio ``[samples]`` (any float array; sent as float32).
        sample_rate: In Hz.
    """
    samples = np.ascontiguousarray(np.asarray(chunk).reshape(-1), dtype="<f4")
    return HEADER.pack(MAGIC, int(sample_rate), len(samples), 1) + samples.tobytes()


def parse_frame(data: bytes) -> tuple[int, np.ndarray]:
    """``(sample_rate, samples)`` of a binary frame; ``samples`` is float32 ``[samples,
    channels]`` (``[samples, 1]`` from this server).

    Raises:
        ValueError: Not a ``PCM0`` frame, or its payload does not match its header.
    """
    if len(data) < HEADER.size or bytes(data[:4]) != MAGIC:
        raise ValueError(f"not a PCM0 frame (starts with {bytes(data[:4])!r})")
    _, rate, count, channels = HEADER.unpack_from(data)
    payload = memoryview(data)[HEADER.size :]
    if channels < 1 or len(payload) != 4 * count * channels:
        raise ValueError(f"PCM0 payload has {len(payload)} bytes, expected 4 * {count} samples "
                         f"* {channels} channels")  # fmt: skip
    return rate, np.frombuffer(payload, dtype="<f4").reshape(count, channels)


class SentenceSplitter:
    """Cuts text that arrives in pieces (an LLM's deltas) into complete sentences.

    A sentence ends at ``.``, ``!``, ``?`` or ``…`` (with any closing quotes or brackets)
    followed by whitespace, or at a line break. The whitespace must have arrived: ``"3."``
    waits, since ``"14"`` may follow. A period after a common abbreviation (``Dr.``, ``e.g.``)
    or a single letter (an initial) does not end one. A tail longer than ``max_pending_chars``
    without an end is cut at its last clause mark or space, so that speech never waits on a
    text that does not punctuate.
    """

    _END = re.compile(r"""[.!?…]+["'”’)\]]*(?=\s)|\n""")
    _ABBREVIATIONS = frozenset("mr mrs ms dr prof sr jr st vs e.g i.e approx fig".split())

    def __init__(self, max_pending_chars: int = 400):
        self.max_pending_chars = max_pending_chars
        self._buffer = ""

    @property
    def pending(self) -> str:
        """The text held back (no sentence end yet)."""
        return self._buffer

    def push(self, text: str) -> list[str]:
        """Adds ``text``; returns the sentences it completed (stripped, in order)."""
        self._buffer += text
        out, start = [], 0
        for m in self._END.finditer(self._buffer):
            if m.group().startswith(".") and len(m.group()) == 1:
                word = self._buffer[start : m.start()].rsplit(None, 1)[-1:]
                word = word[0].lstrip("\"'“‘([").lower() if word else ""
                if word in self._ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                    continue
            piece = self._buffer[start : m.end()].strip()
            if piece:
                out.append(piece)
            start = m.end()
        self._buffer = self._buffer[start:]
        while len(self._buffer) > self.max_pending_chars:
            cut = max(self._buffer.rfind(c) for c in ",;:—")  # a clause, else a word
            cut = cut if cut > 0 else self._buffer.rfind(" ")
            if cut <= 0:
                break
            out.append(self._buffer[: cut + 1].strip())
            self._buffer = self._buffer[cut + 1 :]
        return out

    def flush(self) -> str:
        """What is held back, stripped (the text's end); empties the buffer."""
        tail, self._buffer = self._buffer.strip(), ""
        return tail


class _ClientError(Exception):
    """A request the server refuses; answered as ``{"type": "error", "code", "message"}``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _number(msg: dict, name: str, default, ok, expected: str, integral: bool = False):
    value = msg.get(name, default)
    if value is None:
        value = default
    kind = numbers.Integral if integral else numbers.Real
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
        or not ok(value)
    ):  # fmt: skip
        raise _ClientError("bad_request", f"{name} must be {expected}, got {value!r}")
    return value


def _flag(msg: dict, name: str, default: bool) -> bool:
    value = msg.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _ClientError("bad_request", f"{name} must be true or false, got {value!r}")
    return value


def _options(msg: dict) -> dict:
    """The generation options of a start message, checked: ``stream_chunks``' keywords."""
    chunk_tokens = _number(msg, "chunk_tokens", 21, lambda v: v > 0 and v % 7 == 0 and v <= 7000,
                           "a positive multiple of 7 (7 tokens per SNAC frame), at most 7000",
                           integral=True)  # fmt: skip
    options = {
        "streaming_chunk_tokens": int(chunk_tokens),
        "temperature": float(_number(msg, "temperature", 0.6, lambda v: v >= 0, "a number >= 0")),
        "ultra_low_latency": _flag(msg, "ultra_low_latency", True),
        "respect_source_boundaries": _flag(msg, "respect_source_boundaries", False),
        "output_chunk_duration_ms": float(_number(
            msg, "output_chunk_duration_ms", 150, lambda v: 1 <= v <= 60_000,
            "a number of milliseconds in [1, 60000]")),
        "top_p": float(_number(msg, "top_p", 0.8, lambda v: 0 < v <= 1, "a number in (0, 1]")),
        "repetition_penalty": float(_number(msg, "repetition_penalty", 1.3, lambda v: v > 0,
                                            "a number > 0")),
        "max_tokens": int(_number(msg, "max_tokens", 1200, lambda v: 7 <= v <= 100_000,
                                  "an integer in [7, 100000]", integral=True)),
        "seed": _number(msg, "seed", None, lambda v: 0 <= v < 2**63,
                        "an integer in [0, 2**63) or null", integral=True),
        "speed": float(_number(msg, "speed", 1.0, lambda v: 0.5 <= v <= 2.0,
                               "a number in [0.5, 2.0]")),
    }  # fmt: skip
    lang = msg.get("lang_code", "a")
    if lang not in LANG_CODES:
        raise _ClientError("bad_request", f"lang_code must be one of {', '.join(LANG_CODES)}, "
                                          f"got {str(lang)[:20]!r}")  # fmt: skip
    options["lang_code"] = lang
    return options


def _text(msg: dict, limit: int, allow_empty: bool = False) -> str:
    text = msg.get("text", "" if allow_empty else None)
    if not isinstance(text, str):
        raise _ClientError("bad_request", f"text must be a string, got {type(text).__name__}")
    if not allow_empty and not text.strip():
        raise _ClientError("bad_request", "text must not be empty")
    if len(text) > limit:
        raise _ClientError("too_large", f"text must be at most {limit} characters, got "
                                        f"{len(text)}")  # fmt: skip
    return text


class _Stream:
    """One stream of a connection: pieces of text queued for synthesis, one at a time, their
    frames sent in order; ends with exactly one ``stream_complete``, ``stream_cancelled`` or
    ``error``."""

    def __init__(self, conn: _Connection, stream_id: int, model: str, voice: str,
                 sample_rate: int, options: dict, text_mode: bool):  # fmt: skip
        self.conn, self.id, self.model, self.voice = conn, stream_id, model, voice
        self.sample_rate, self.options, self.text_mode = sample_rate, options, text_mode
        self.pieces: asyncio.Queue = asyncio.Queue()
        self.splitter = SentenceSplitter()
        self.input_open, self.chars = True, 0
        self.chunks = self.samples = 0
        self.started, self.first_chunk_s = time.perf_counter(), None
        self.cancel: threading.Event | None = None
        self.task: asyncio.Task | None = None

    def feed(self, text: str) -> None:
        """Queues each complete sentence of ``text`` (the rest waits for more)."""
        self.chars += len(text)
        for sentence in self.splitter.push(text):
            self._queue(sentence)

    def end(self, text: str | None = None) -> None:
        """Queues ``text`` whole (the model checks it), or else what the splitter holds; then
        the end."""
        if text is None:
            self._queue(self.splitter.flush())
        else:
            self.pieces.put_nowait(text)
        self.pieces.put_nowait(None)
        self.input_open = False

    def _queue(self, text: str) -> None:
        if re.search(r"\w", text):  # punctuation alone has nothing to say
            self.pieces.put_nowait(text)

    def counts(self) -> dict:
        """The counts every closing message carries."""
        return {"stream_id": self.id, "chunks": self.chunks, "samples": self.samples,
                "duration_s": self.samples / self.sample_rate,
                "first_chunk_s": self.first_chunk_s,
                "elapsed_s": time.perf_counter() - self.started}  # fmt: skip

    async def run(self) -> None:
        """Synthesises the queued pieces in order until the end or a failure."""
        registry, ws = self.conn.server.registry, self.conn.ws
        try:
            while (text := await self.pieces.get()) is not None:
                self.cancel = threading.Event()  # the registry sets it when a piece ends
                chunks = registry.stream(text, model=self.model, voice=self.voice,
                                         cancel=self.cancel, **self.options)  # fmt: skip
                async with contextlib.aclosing(chunks):
                    async for chunk, _ in chunks:
                        if len(chunk):
                            await ws.send(pcm_frame(chunk, self.sample_rate))
                            if self.first_chunk_s is None:
                                self.first_chunk_s = time.perf_counter() - self.started
                            self.chunks, self.samples = self.chunks + 1, self.samples + len(chunk)
            self.conn.stream_ended(self)
            log.info("stream %d complete: %d chunks, %d samples", self.id, self.chunks,
                     self.samples)  # fmt: skip
            await self.conn.send({"type": "stream_complete", **self.counts()})
        except Busy as e:
            await self._fail("busy", str(e))
        except ValueError as e:
            await self._fail("bad_request", str(e))
        except Exception as e:  # noqa: BLE001 - the connection, and the server, go on
            if not _closed(e):
                log.exception("stream %d failed", self.id)
                await self._fail("generation_failed", f"generation failed: {e}")

    async def _fail(self, code: str, message: str) -> None:
        self.conn.stream_ended(self)
        await self.conn.error(code, message, stream_id=self.id)

    async def stop(self) -> None:
        """Stops generation (the worker at its next chunk) and sending, and waits for both."""
        if self.cancel is not None:
            self.cancel.set()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def _closed(e: BaseException) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(e, ConnectionClosed)


class _Connection:
    """One client: its messages handled in order; at most one stream at a time."""

    def __init__(self, server: StreamingServer, ws):
        self.server, self.ws = server, ws
        self.stream: _Stream | None = None
        self.streams = 0
        self.handlers = {
            "start_orpheus_stream": self.start,
            "start_text_stream": self.start_text,
            "append_text": self.append_text,
            "end_text": self.end_text,
            "cancel": self.cancel,
        }

    async def send(self, message: dict) -> None:
        """Sends a JSON message (nothing when the client is gone)."""
        with contextlib.suppress(Exception):
            await self.ws.send(json.dumps(message))

    async def error(self, code: str, message: str, **extra) -> None:
        """Sends ``{"type": "error", "code", "message"}``."""
        log.info("error to %s: %s: %s", self.ws.remote_address, code, message)
        await self.send({"type": "error", "code": code, "message": message, **extra})

    def stream_ended(self, stream: _Stream) -> None:
        """Frees the connection for the next stream (before its closing message goes out)."""
        if self.stream is stream:
            self.stream = None

    async def run(self) -> None:
        """Handles messages until the client leaves; then stops its stream."""
        try:
            async for message in self.ws:
                await self.on_message(message)
        except Exception as e:  # noqa: BLE001 - a client gone mid-message
            if not _closed(e):
                raise
        finally:
            if self.stream is not None:
                log.info("client %s left during stream %d", self.ws.remote_address,
                         self.stream.id)  # fmt: skip
                await self.stream.stop()

    async def on_message(self, message) -> None:
        """Parses one message and dispatches it; a refused one is answered with an error."""
        try:
            if not isinstance(message, str):
                raise _ClientError("bad_request", "binary messages are not accepted: send "
                                                  "JSON text messages")  # fmt: skip
            try:
                msg = json.loads(message)
            except ValueError as e:
                raise _ClientError("bad_json", f"message is not valid JSON: {e}") from e
            if not isinstance(msg, dict):
                raise _ClientError("bad_request", "a message must be a JSON object with a type")
            kind = msg.get("type")
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise _ClientError("unknown_type", f"unknown message type "
                                   f"{str(kind)[:40]!r}; expected one of "
                                   f"{', '.join(self.handlers)}")  # fmt: skip
            await handler(msg)
        except _ClientError as e:
            await self.error(e.code, str(e))

    def _idle(self) -> None:
        if self.stream is not None:
            raise _ClientError("already_streaming", f"stream {self.stream.id} is still "
                               "running on this connection; wait for stream_complete or send "
                               "cancel first")  # fmt: skip

    async def _open(self, msg: dict, text_mode: bool) -> _Stream:
        options = _options(msg)
        try:
            model = self.server.registry.resolve(msg.get("model"))
        except ValueError as e:
            raise _ClientError("unknown_model", str(e)) from e
        kind, voices, default_voice, rate = await self.server.model_info(model)
        voice = msg.get("voice") or default_voice
        if voice not in voices:
            raise _ClientError("unknown_voice", f"unknown voice {str(voice)[:40]!r} for "
                               f"{model}; its voices: {', '.join(voices)}")  # fmt: skip
        if kind == "orpheus":
            if options["speed"] != 1.0:
                raise _ClientError("bad_request", "speed is a Kokoro option; Orpheus speaks at "
                                   f"its own pace (got {options['speed']})")  # fmt: skip
            del options["speed"], options["lang_code"]
        self.streams += 1
        stream = _Stream(self, self.streams, model, voice, rate, options, text_mode)
        self.stream = stream
        log.info("stream %d for %s: %s, voice %s", stream.id, self.ws.remote_address, model,
                 voice)  # fmt: skip
        await self.send({
            "type": "stream_started", "stream_id": stream.id,
            "model": self.server.registry.public_name(model), "voice": voice,
            "sample_rate": rate, "num_channels": 1, "format": "PCM0 float32le",
            "mode": "text_stream" if text_mode else "text",
            "chunk_tokens": options["streaming_chunk_tokens"],
            "temperature": options["temperature"],
            "ultra_low_latency": options["ultra_low_latency"],
        })  # fmt: skip
        return stream

    async def start(self, msg: dict) -> None:
        """``start_orpheus_stream``: the whole text, streamed."""
        self._idle()
        text = _text(msg, self.server.max_text_chars)
        stream = await self._open(msg, text_mode=False)
        stream.end(text)
        stream.task = asyncio.create_task(stream.run())

    async def start_text(self, msg: dict) -> None:
        """``start_text_stream``: opens a stream whose text comes in ``append_text``."""
        self._idle()
        text = _text(msg, self.server.max_text_chars, allow_empty=True)
        stream = await self._open(msg, text_mode=True)
        stream.task = asyncio.create_task(stream.run())
        stream.feed(text)

    async def append_text(self, msg: dict) -> None:
        """``append_text``: more text; opens a text stream (with this message's options)
        when none is open."""
        if self.stream is None:
            return await self.start_text(msg)
        stream = self.stream
        if not stream.text_mode:
            raise _ClientError("already_streaming", "append_text feeds a text stream "
                               "(start_text_stream); this connection is playing a "
                               "start_orpheus_stream")  # fmt: skip
        if not stream.input_open:
            raise _ClientError("text_ended", "end_text was sent; start a new stream for more")
        text = _text(msg, self.server.max_text_chars, allow_empty=True)
        if stream.chars + len(text) > self.server.max_stream_chars:
            raise _ClientError("too_large", f"a text stream takes at most "
                               f"{self.server.max_stream_chars} characters")  # fmt: skip
        stream.feed(text)

    async def end_text(self, msg: dict) -> None:
        """``end_text``: the text is complete; what is held back is said, then the end."""
        stream = self.stream
        if stream is None or not stream.text_mode:
            raise _ClientError("not_streaming", "end_text ends a text stream, and none is open")
        if not stream.input_open:
            raise _ClientError("text_ended", "end_text was already sent")
        stream.end()

    async def cancel(self, msg: dict) -> None:
        """``cancel``: stops the stream now (barge-in); answers ``stream_cancelled``."""
        stream = self.stream
        if stream is None:
            raise _ClientError("not_streaming", "no stream to cancel")
        self.stream = None
        await stream.stop()
        log.info("stream %d cancelled after %d chunks", stream.id, stream.chunks)
        await self.send({"type": "stream_cancelled", **stream.counts()})


class StreamingServer:
    """The WebSocket front door over a :class:`ModelRegistry`: one handler per connection,
    the browser client on ``GET /`` of the same port.

    Args:
        registry: The models served.
        max_text_chars: Longest ``text`` of one message.
        max_stream_chars: Most text one ``append_text`` stream may take in all.
        max_size: Largest WebSocket message accepted (bytes); a bigger one closes the
            connection with code 1009.
        max_connections: Connections at once; beyond that the handshake gets HTTP 503.
    """

    def __init__(self, registry: ModelRegistry, *, max_text_chars: int = 5000,
                 max_stream_chars: int = 100_000, max_size: int = 2**20,
                 max_connections: int = 64):  # fmt: skip
        for name, value in [("max_text_chars", max_text_chars), ("max_size", max_size),
                            ("max_stream_chars", max_stream_chars),
                            ("max_connections", max_connections)]:  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.registry = registry
        self.max_text_chars, self.max_stream_chars = max_text_chars, max_stream_chars
        self.max_size, self.max_connections = max_size, max_connections
        self.connections: set[_Connection] = set()
        self._info: dict[str, tuple] = {}
        page = resources.files(__package__).joinpath("static", PAGE).read_bytes()
        # served from here, the page connects back to where it came from
        self._page = page.replace(b'<meta name="ws-server" content="">',
                                  b'<meta name="ws-server" content="same-origin">')  # fmt: skip

    async def model_info(self, model: str) -> tuple[str, list[str], str, int]:
        """``(kind, voices, default_voice, sample_rate)`` of a served model (loading it, in
        a thread, on first use).

        Raises:
            _ClientError: The model failed to load.
        """
        if model not in self._info:
            registry = self.registry

            def info():
                m = registry.get(model)
                voices = registry.voices(model)
                return registry.kind(model), voices, registry.default_voice(model), m.sample_rate

            try:
                self._info[model] = await asyncio.to_thread(info)
            except Exception as e:  # noqa: BLE001 - reported to the client, server goes on
                log.exception("loading %s failed", model)
                raise _ClientError("model_unavailable", f"loading {model} failed: {e}") from e
        return self._info[model]

    def process_request(self, connection, request):
        """The page for a plain ``GET /`` (or ``/websocket_test_client.html``), 404 for any
        other plain request, 503 past ``max_connections``; WebSocket upgrades go on."""
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if upgrade:
            if len(self.connections) >= self.max_connections:
                return connection.respond(503, "too many connections; try again later\n")
            return None
        path = request.path.split("?", 1)[0]
        if path not in PAGE_PATHS:
            return connection.respond(404, "not found\n")
        response = connection.respond(200, "")
        response.body = self._page
        del response.headers["Content-Type"], response.headers["Content-Length"]
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        response.headers["Content-Length"] = str(len(self._page))
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def handler(self, ws) -> None:
        """Serves one WebSocket connection until it closes."""
        conn = _Connection(self, ws)
        self.connections.add(conn)
        log.info("client %s connected", ws.remote_address)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            log.info("client %s disconnected", ws.remote_address)

    async def serve(self, host: str = "127.0.0.1", port: int = 8765):
        """Starts listening; returns the started ``websockets`` server (``close()``, then
        ``await wait_closed()`` to stop; ``sockets[0].getsockname()`` for the port)."""
        from websockets.asyncio.server import serve as ws_serve

        # PCM barely compresses: deflate would cost CPU for nothing
        return await ws_serve(self.handler, host, port, process_request=self.process_request,
                              max_size=self.max_size, compression=None)  # fmt: skip


async def serve(registry: ModelRegistry, host: str = "127.0.0.1", port: int = 8765, **options):
    """Starts a :class:`StreamingServer` on ``host:port`` (port 0: any free one) in the running
    event loop; returns the ``websockets`` server. ``options``: :class:`StreamingServer`'s."""
    return await StreamingServer(registry, **options).serve(host, port)


async def _drain(timeout: float = 10.0) -> None:
    """Keeps the loop running until cancelled generations end (each at its next chunk): their
    worker threads hand their last words to this loop, which must not be closed yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
        t.name == "tts-generation" and t.is_alive() for t in threading.enumerate()
    ):
        await asyncio.sleep(0.02)


class BackgroundServer:
    """A :class:`StreamingServer` in its own thread and event loop (tests, embedding):
    ``with BackgroundServer(registry, port=0) as s: ... s.url``.

    Args:
        registry, host, port: As :func:`serve`; port 0 picks a free port.
        options: :class:`StreamingServer`'s.
    """

    def __init__(self, registry: ModelRegistry, host: str = "127.0.0.1", port: int = 0,
                 **options):  # fmt: skip
        self.server = StreamingServer(registry, **options)
        self.host, self.port = host, port
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ws-server", daemon=True)

    @property
    def url(self) -> str:
        """``ws://host:port/``."""
        return f"ws://{self.host}:{self.port}/"

    @property
    def http_url(self) -> str:
        """``http://host:port/``: the client page."""
        return f"http://{self.host}:{self.port}/"

    def start(self, timeout: float = 30) -> BackgroundServer:
        """Starts the thread; returns once the server listens.

        Raises:
            RuntimeError: It failed to start (the cause chained).
        """
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure is not None:
            raise RuntimeError(f"the WebSocket server failed to start on {self.host}:"
                               f"{self.port}") from self._failure  # fmt: skip
        return self

    def stop(self, timeout: float = 30) -> None:
        """Closes every connection and the listening socket; joins the thread."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        async def main():
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            try:
                server = await self.server.serve(self.host, self.port)
            except BaseException as e:
                self._failure = e
                self._ready.set()
                raise
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            server.close()
            await server.wait_closed()
            await _drain()

        with contextlib.suppress(Exception):
            asyncio.run(main())


_LIMITS = (
    ("--max-text-chars", 5000, "longest text of one message"),
    ("--max-stream-chars", 100_000, "most text one append_text stream takes"),
    ("--max-concurrent", 1, "generations running at once"),
    ("--max-waiting", 32, "generations waiting for a slot before 'busy'"),
    ("--max-connections", 64, "connections at once"),
    ("--max-message-bytes", 2**20, "largest message accepted; a bigger one closes with 1009"),
)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m mlx_audio_tts.orpheus_streaming_server`` (and of
    ``mlx-audio-tts stream-server``)."""
    p = argparse.ArgumentParser(
        prog="mlx-audio-tts stream-server",
        description="WebSocket streaming TTS server: JSON control messages, PCM0 float32 "
        "frames (24 kHz mono); the browser client at http://HOST:PORT/.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    p.add_argument("--model", action="append", default=None,
                   help=f"a model to serve, repeatable; the first is the default "
                        f"(default: {DEFAULT_MODEL})")  # fmt: skip
    p.add_argument("--no-preload", action="store_true",
                   help="load the model at the first request instead of at start")  # fmt: skip
    p.add_argument("--verbose", action="store_true", help="log connections and streams")
    for flag, default, meaning in _LIMITS:
        p.add_argument(flag, type=int, default=default, help=f"{meaning} (default: {default})")
    return p


def main(argv=None) -> int:
    """Runs the server until interrupted (Ctrl-C or SIGTERM). Returns the exit status."""
    args = build_parser().parse_args(argv)
    for flag, _, _ in _LIMITS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value < (0 if flag == "--max-waiting" else 1):
            print(f"error: {flag} must be at least {0 if flag == '--max-waiting' else 1}, got "
                  f"{value}", file=sys.stderr)  # fmt: skip
            return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}, beyond this machine, without authentication",
              file=sys.stderr)  # fmt: skip
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    registry = ModelRegistry(args.model or [DEFAULT_MODEL], preload=not args.no_preload,
                             max_concurrent=args.max_concurrent,
                             max_waiting=args.max_waiting)  # fmt: skip
    server = StreamingServer(registry, max_text_chars=args.max_text_chars,
                             max_stream_chars=args.max_stream_chars,
                             max_size=args.max_message_bytes,
                             max_connections=args.max_connections)  # fmt: skip

    async def run():
        import signal

        ws_server = await server.serve(args.host, args.port)
        port = ws_server.sockets[0].getsockname()[1]
        print(f"serving {', '.join(registry.names)} on ws://{args.host}:{port}/ "
              f"(client page: http://{args.host}:{port}/)", flush=True)  # fmt: skip
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        ws_server.close()
        await ws_server.wait_closed()
        await _drain()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
