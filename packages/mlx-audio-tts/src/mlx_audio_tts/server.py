"""The web page, the seed's REST endpoints and an OpenAI-compatible speech API (FastAPI on
uvicorn) over one :class:`~mlx_audio_tts.serving.ModelRegistry`.

Front doors: ``/`` (the page with the 3D orb, ``static/``), the seed's ``/tts``,
``/audio/{filename}``, ``/play``, ``/stop``, ``/open_output_folder``, and OpenAI's
``/v1/audio/speech`` (streamed through one :class:`mlx_audio_io.AudioEncoder` per response),
``/v1/models``, ``/v1/audio/voices``. Every input is validated and every error is JSON with
a 4xx/5xx status; the server binds 127.0.0.1 and sends no CORS headers unless told to.
``docs/server.md`` documents it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Literal

import mlx_audio_io as aio  # first: the BLAS preload must run before mlx.core

import numpy as np
from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from . import __version__
from .serving import Busy, ModelRegistry

__all__ = ["DEFAULT_MODEL", "FORMATS", "ApiError", "build_parser", "create_app",
           "default_output_dir", "encode_stream", "encode_whole", "main", "new_filename",
           "openai_router", "safe_output_path", "seed_router", "SpeechRequest"]  # fmt: skip

log = logging.getLogger(__name__)

DEFAULT_MODEL = "prince-canuma/Kokoro-82M"
#: OpenAI model names, all served by the default model
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
#: response_format -> content type
FORMATS = {"mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
           "wav": "audio/wav", "pcm": "audio/pcm"}  # fmt: skip
#: OpenAI's voice names -> the Kokoro voice of that name, when the model has it
OPENAI_VOICES = {"alloy": "af_alloy", "echo": "am_echo", "fable": "bm_fable",
                 "onyx": "am_onyx", "nova": "af_nova", "shimmer": "af_sky"}  # fmt: skip
SPEED_RANGE = (0.5, 2.0)
_SERVED_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_LANG_CODES = "abefhijpz"  # Kokoro voices start with their language's code
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
STATIC = Path(__file__).parent / "static"


class ApiError(Exception):
    """An error answered as JSON: ``{"error": {"message", "type", "code"}}`` with a status."""

    def __init__(self, status: int, message: str, code: str = "invalid_request",
                 headers: dict | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers


# --- files -------------------------------------------------------------------------------


def default_output_dir() -> Path:
    """``~/.mlx_audio/outputs`` if it can be created and written, else a private folder in
    the system's temporary directory."""
    for folder in (Path.home() / ".mlx_audio" / "outputs",
                   Path(tempfile.gettempdir()) / f"mlx_audio_outputs-{os.getuid()}"):  # fmt: skip
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.NamedTemporaryFile(dir=folder):
                pass
            return folder
        except OSError as e:
            log.warning("output folder %s is not writable (%s); trying the next", folder, e)
    return Path(tempfile.mkdtemp(prefix="mlx_audio_outputs-"))


def safe_output_path(folder: Path, filename) -> Path:
    """The regular file ``filename`` names directly inside ``folder``, never anything else.

    Refused: path separators, ``..``, absolute paths, hidden or odd names, and a symlink (or
    anything) whose real path leaves ``folder``.

    Raises:
        ApiError: 400 for a name that is not a plain file name, 404 for no such file.
    """
    if not isinstance(filename, str) or not _NAME.fullmatch(filename) or ".." in filename:
        raise ApiError(400, f"filename must be a plain file name from this server's output "
                            f"folder, got {str(filename)[:100]!r}", "invalid_filename")  # fmt: skip
    root = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(root / filename))
    if real.parent != root or not real.is_file():
        raise ApiError(404, f"no such audio file: {filename!r}", "not_found")
    return real


def _open_folder(path: Path) -> None:
    """Opens ``path`` in the desktop's file manager (macOS ``open``, else ``xdg-open``)."""
    if sys.platform == "win32":
        os.startfile(path)  # noqa: S606 - a folder we created
        return
    tool = "open" if sys.platform == "darwin" else "xdg-open"
    exe = shutil.which(tool)
    if exe is None:
        raise RuntimeError(f"{tool} is not installed")
    subprocess.run([exe, str(path)], check=True, timeout=10, capture_output=True)  # noqa: S603


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- playback on the server ---------------------------------------------------------------


class _Playback:
    """Plays one file at a time through sounddevice (the server's own sound device)."""

    def __init__(self, player_factory=None):
        if player_factory is None:
            from .generate import _player as player_factory
        self._factory = player_factory
        self._player = None
        self._lock = threading.Lock()
        self.playing: str | None = None

    def play(self, path: Path) -> None:
        audio, rate = aio.load(str(path))
        with self._lock:
            try:
                player = self._player or self._factory()
                player.stop()
                player.play(np.asarray(audio), rate)
            except Exception as e:  # noqa: BLE001 - PortAudio's errors vary by platform
                raise ApiError(503, f"server-side playback is not available: {e}",
                               "no_audio_device") from e  # fmt: skip
            self._player, self.playing = player, path.name

    def stop(self) -> bool:
        with self._lock:
            was, self.playing = self.playing, None
            if self._player is not None:
                try:
                    self._player.stop()
                except Exception as e:  # noqa: BLE001
                    raise ApiError(503, f"stopping playback failed: {e}",
                                   "no_audio_device") from e  # fmt: skip
            return was is not None


# --- generation ---------------------------------------------------------------------------


class _Speech:
    """What every front door shares: validation against the registry, generation."""

    def __init__(self, registry: ModelRegistry, max_text_chars: int):
        self.registry = registry
        self.max_text_chars = max_text_chars

    def model(self, name: str | None) -> str:
        if name in OPENAI_MODELS:
            return self.registry.default
        try:
            return self.registry.resolve(name)
        except ValueError as e:
            raise ApiError(400, str(e), "model_not_found") from e

    def public_id(self, key: str) -> str:
        """A model's id as clients see it (a local folder: its name, never its path)."""
        return self.registry.public_name(key)

    def text(self, text) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "text must be a non-empty string", "invalid_text")
        if len(text) > self.max_text_chars:
            raise ApiError(400, f"text must be at most {self.max_text_chars} characters, got "
                                f"{len(text)}", "text_too_long")  # fmt: skip
        return text

    def speed(self, speed) -> float:
        lo, hi = SPEED_RANGE
        ok = isinstance(speed, (int, float)) and not isinstance(speed, bool)
        if not ok or not lo <= speed <= hi:
            raise ApiError(400, f"speed must be a number in [{lo}, {hi}], got {speed!r}",
                           "invalid_speed")  # fmt: skip
        return float(speed)

    def voice(self, key: str, voice: str | None) -> str:
        """The model's voice for ``voice`` (None: its default; OpenAI names map to Kokoro's;
        Kokoro blends ``"a,b"`` of known voices pass)."""
        known = self.registry.voices(key)
        if voice is None or voice == "":
            return self.registry.default_voice(key)
        voice = str(voice)
        if voice in known:
            return voice
        if OPENAI_VOICES.get(voice) in known:
            return OPENAI_VOICES[voice]
        parts = voice.split(",")
        if self.registry.kind(key) == "kokoro" and len(parts) > 1 and set(parts) <= set(known):
            return voice
        shown = ", ".join(known[:60])
        raise ApiError(400, f"unknown voice {voice[:60]!r} for model {self.public_id(key)!r}; "
                            f"its voices: {shown}", "invalid_voice")  # fmt: skip

    def options(self, key: str, voice: str, speed: float) -> dict:
        options = {"voice": voice, "speed": speed}
        if self.registry.kind(key) == "kokoro" and voice[0] in _LANG_CODES:
            options["lang_code"] = voice[0]
        return options

    async def prepare(self, model, text, voice, speed) -> tuple[str, dict]:
        """Validated ``(model key, generation options)``; loading the model (once) in a
        worker thread."""
        key = self.model(model)
        text = self.text(text)
        speed = self.speed(speed)
        voice = await asyncio.to_thread(self.voice, key, voice)
        return key, await asyncio.to_thread(self.options, key, voice, speed)

    async def start(self, text: str, key: str, options: dict):
        """The chunk stream, its first chunk already generated (so argument errors, a busy
        server or a failed load still become a status code): ``(first, rest, sample_rate)``."""
        chunks = self.registry.stream(text, model=key, **options)
        try:
            chunk, meta = await chunks.__anext__()
        except StopAsyncIteration as e:
            raise ApiError(500, "the model produced no audio", "generation_failed") from e
        except Busy as e:
            raise ApiError(503, str(e), "busy", {"Retry-After": "1"}) from e
        except ValueError as e:
            raise ApiError(400, str(e), "invalid_request") from e
        except Exception as e:
            log.exception("generation failed")
            raise ApiError(500, f"generation failed: {e}", "generation_failed") from e
        return chunk, chunks, int(meta["sample_rate"])

    async def whole(self, text: str, key: str, options: dict) -> tuple[np.ndarray, int]:
        """All of the audio: ``(float32 [samples], sample_rate)``."""
        first, rest, rate = await self.start(text, key, options)
        parts = [first]
        try:
            async for chunk, _ in rest:
                parts.append(chunk)
        except Exception as e:
            log.exception("generation failed")
            raise ApiError(500, f"generation failed: {e}", "generation_failed") from e
        finally:
            await rest.aclose()
        return np.concatenate(parts).astype(np.float32, copy=False), rate


def encode_whole(audio: np.ndarray, rate: int, fmt: str) -> bytes:
    """One finished file (WAV with exact sizes, MP3 with its gapless tag, Ogg Opus, FLAC
    24-bit), an ADTS AAC stream, or raw 16-bit PCM."""
    if fmt in ("aac", "pcm"):
        enc = aio.AudioEncoder(fmt, rate, 1)
        return enc.encode(audio) + enc.close()
    out = io.BytesIO()
    encoding = "pcm16" if fmt == "wav" else "float32"
    aio.save(out, audio, rate, encoding=encoding, format=fmt)
    return out.getvalue()


async def encode_stream(first: np.ndarray, rest, rate: int, fmt: str):
    """The response body of a streamed speech request: one encoder for the whole response,
    its bytes sent as they are encoded (the generation stops when the client goes)."""
    enc = aio.AudioEncoder(fmt, rate, 1, encoding="pcm16" if fmt == "wav" else None)
    try:
        data = enc.encode(first)
        if data:
            yield data
        try:
            async for chunk, _ in rest:
                data = enc.encode(chunk)
                if data:
                    yield data
        except Exception:  # noqa: BLE001 - the status is sent: end the stream cleanly
            log.exception("generation failed mid-stream; the response ends here")
        tail = enc.close()
        if tail:
            yield tail
    finally:
        enc.close()
        await rest.aclose()


# --- the app -------------------------------------------------------------------------------


class _BodyLimit:
    """ASGI middleware: request bodies over ``limit`` bytes are refused with 413 (by their
    Content-Length, or while they arrive when it is missing)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send)
        seen, exceeded, started = 0, False, False

        async def counted():
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # the app sees the client gone; we answer 413
                exceeded = True
                return {"type": "http.disconnect"}
            return message

        async def sending(message):
            nonlocal started
            if not exceeded:
                started = True
                await send(message)

        try:
            await self.app(scope, counted, sending)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(send)

    async def _refuse(self, send):
        body = {"error": {"message": f"request body must be at most {self.limit} bytes",
                          "type": "invalid_request_error", "code": "too_large"}}  # fmt: skip
        await JSONResponse(body, status_code=413)({"type": "http"}, None, send)


def _error_body(message: str, code: str, status: int) -> dict:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "code": code}}


def create_app(registry: ModelRegistry, output_dir=None, host: str = "127.0.0.1", *,
               max_text_chars: int = 5000, max_upload_bytes: int = 1 << 20,
               cors_origins=(), player=None):  # fmt: skip
    """The FastAPI app: the page, the seed's REST endpoints and the OpenAI-compatible API.

    Args:
        registry: The models served (the first is the default, also for ``tts-1``).
        output_dir: Where ``/tts`` writes its files (default :func:`default_output_dir`).
        host: The address the server binds: ``/open_output_folder`` works only on loopback,
            and there the ``Host`` header must name loopback too (no DNS rebinding).
        max_text_chars: Longest text accepted.
        max_upload_bytes: Largest request body accepted (413 beyond).
        cors_origins: Origins allowed cross-origin requests (none by default: no CORS).
        player: ``() -> sounddevice``-like module for ``/play`` (default: sounddevice, once
            an output device is found).

    Returns:
        A :class:`fastapi.FastAPI` app, to run with uvicorn.
    """
    folder = Path(output_dir) if output_dir is not None else default_output_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # no /docs or /redoc: their pages load Swagger UI from a CDN (/openapi.json stays)
    app = FastAPI(title="mlx-audio-tts server", version=__version__, docs_url=None, redoc_url=None)
    app.state.speech = _Speech(registry, max_text_chars)
    app.state.output_dir = folder
    app.state.host = host
    app.state.playback = _Playback(player)
    app.state.limits = {"max_text_chars": max_text_chars, "max_upload_bytes": max_upload_bytes,
                        "speed_range": list(SPEED_RANGE), "formats": list(FORMATS)}  # fmt: skip

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse(_error_body(e.message, e.code, e.status), e.status, e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query"))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse(_error_body(message, "invalid_request", 400), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        return JSONResponse(_error_body(str(e.detail), "http_error", e.status_code),
                            e.status_code, getattr(e, "headers", None))  # fmt: skip

    @app.exception_handler(Exception)
    async def crash(request: Request, e: Exception):
        log.exception("unhandled error")
        return JSONResponse(_error_body(f"internal error: {type(e).__name__}", "internal", 500),
                            500)  # fmt: skip

    @app.middleware("http")
    async def headers(request: Request, call_next):
        if _is_loopback(host) and not _is_loopback(_host_name(request.headers.get("host"))):
            return JSONResponse(_error_body("this server answers only to a loopback Host "
                                            "header", "bad_host", 400), 400)  # fmt: skip
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.get("/", include_in_schema=False)
    async def page():
        csp = ("default-src 'self'; media-src 'self' blob:; img-src 'self' data:; "
               "object-src 'none'; frame-ancestors 'none'")  # fmt: skip
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": csp})

    app.include_router(seed_router())
    app.include_router(openai_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])  # fmt: skip
    app.add_middleware(_BodyLimit, limit=max_upload_bytes)
    return app


def _host_name(header: str | None) -> str | None:
    """The host of a Host header (``[::1]:8000`` -> ``::1``)."""
    if not header:
        return None
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else None
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def new_filename(ext: str = "wav") -> str:
    """A fresh, unguessable output file name: ``tts_<time>_<random>.<ext>``."""
    return f"tts_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:10]}.{ext}"


# --- the seed's endpoints ---------------------------------------------------------------------


def seed_router():
    """``/tts``, ``/audio/{filename}``, ``/play``, ``/stop``, ``/open_output_folder``."""
    router = APIRouter(tags=["seed"])

    @router.post("/tts")
    async def tts(request: Request, text: str = Form(...), voice: str | None = Form(None),
                  speed: float = Form(1.0), model: str | None = Form(None)):  # fmt: skip
        """Synthesises ``text`` into a WAV in the output folder; answers its file name."""
        speech: _Speech = request.app.state.speech
        key, options = await speech.prepare(model, text, voice, speed)
        audio, rate = await speech.whole(text, key, options)
        name = new_filename("wav")
        path = request.app.state.output_dir / name
        await asyncio.to_thread(aio.save, str(path), audio, rate, encoding="pcm16")
        return {"filename": name, "url": f"/audio/{name}", "model": speech.public_id(key),
                "voice": options["voice"], "speed": options["speed"], "sample_rate": rate,
                "duration_s": round(len(audio) / rate, 3)}  # fmt: skip

    @router.get("/audio/{filename:path}")
    async def audio(request: Request, filename: str):
        """A file from the output folder (nothing else)."""
        path = safe_output_path(request.app.state.output_dir, filename)
        kind = _SERVED_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return FileResponse(path, media_type=kind)

    @router.post("/play")
    async def play(request: Request, filename: str = Form(...)):
        """Plays an output file on the server's sound device."""
        path = safe_output_path(request.app.state.output_dir, filename)
        await asyncio.to_thread(request.app.state.playback.play, path)
        return {"status": "playing", "filename": path.name}

    @router.post("/stop")
    async def stop(request: Request):
        """Stops the server-side playback (if any)."""
        was = await asyncio.to_thread(request.app.state.playback.stop)
        return {"status": "stopped", "was_playing": was}

    @router.post("/open_output_folder")
    async def open_output_folder(request: Request):
        """Opens the output folder in the file manager of the machine the server runs on
        (only for a server bound to loopback, asked from loopback)."""
        folder = request.app.state.output_dir
        client = request.client.host if request.client else None
        if not _is_loopback(request.app.state.host) or not _is_loopback(client):
            raise ApiError(403, "the output folder opens only on a server bound to, and "
                                "asked from, this machine (127.0.0.1)", "not_local")  # fmt: skip
        try:
            await asyncio.to_thread(_open_folder, folder)
        except Exception as e:  # noqa: BLE001 - no desktop, no tool: say so
            raise ApiError(500, f"opening {folder} failed: {e}", "open_failed") from e
        return {"status": "opened", "path": str(folder)}

    @router.get("/info")
    async def info(request: Request):
        """The models served, the limits, and whether the folder can be opened."""
        speech: _Speech = request.app.state.speech
        return {"models": [speech.public_id(m) for m in speech.registry.names],
                "default_model": speech.public_id(speech.registry.default),
                "can_open_folder": _is_loopback(request.app.state.host),
                **request.app.state.limits}  # fmt: skip

    return router


# --- the OpenAI-compatible API -----------------------------------------------------------------


class SpeechRequest(BaseModel):
    """OpenAI's ``POST /v1/audio/speech`` body (``instructions`` is accepted, unused)."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field("tts-1", max_length=500)
    input: str
    voice: str | None = Field(None, max_length=500)
    speed: float = 1.0
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    stream: bool = False
    instructions: str | None = None


def openai_router():
    """``/v1/audio/speech``, ``/v1/models``, ``/v1/audio/voices``."""
    router = APIRouter(prefix="/v1", tags=["openai"])

    @router.post("/audio/speech")
    async def speech(request: Request, body: SpeechRequest, stream: bool | None = None):
        """Speech for ``input``: the whole file, or (``stream``) chunked as it is made."""
        state: _Speech = request.app.state.speech
        key, options = await state.prepare(body.model, body.input, body.voice, body.speed)
        fmt = body.response_format
        headers = {"X-Sample-Rate": "24000", "Cache-Control": "no-store"}
        if stream if stream is not None else body.stream:
            first, rest, rate = await state.start(body.input, key, options)
            headers["X-Sample-Rate"] = str(rate)
            return StreamingResponse(encode_stream(first, rest, rate, fmt),
                                     media_type=FORMATS[fmt], headers=headers)  # fmt: skip
        audio, rate = await state.whole(body.input, key, options)
        data = await asyncio.to_thread(encode_whole, audio, rate, fmt)
        headers["X-Sample-Rate"] = str(rate)
        return Response(data, media_type=FORMATS[fmt], headers=headers)

    @router.get("/models")
    async def models(request: Request):
        """The served models, plus OpenAI's names for the default."""
        state: _Speech = request.app.state.speech
        ids = [state.public_id(m) for m in state.registry.names] + list(OPENAI_MODELS)
        return {"object": "list", "data": [{"id": i, "object": "model", "created": 0,
                                            "owned_by": "mlx-audio"} for i in ids]}  # fmt: skip

    @router.get("/audio/voices")
    def voices(request: Request, model: str | None = None):
        """A model's voices and its default (the default model's without ``model``)."""
        state: _Speech = request.app.state.speech
        key = state.model(model)
        return {"model": state.public_id(key), "voices": state.registry.voices(key),
                "default": state.registry.default_voice(key)}  # fmt: skip

    return router


# --- the command line ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m mlx_audio_tts.server`` (and ``mlx-audio-tts server``)."""
    p = argparse.ArgumentParser(
        prog="mlx-audio-tts server",
        description="The web page (3D orb), REST and OpenAI-compatible speech API.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="MODEL",
        help=f"a model to serve (repeat for several; the first is the default, "
        f"also for tts-1); default {DEFAULT_MODEL}",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.add_argument(
        "--no-preload",
        action="store_true",
        help="load the default model at the first request, not at start",
    )
    p.add_argument(
        "--output-dir", default=None, help="where /tts writes files (default ~/.mlx_audio/outputs)"
    )
    p.add_argument(
        "--max-text-chars", type=int, default=5000, help="longest text accepted (default 5000)"
    )
    p.add_argument(
        "--max-upload-bytes",
        type=int,
        default=1 << 20,
        help="largest request body accepted (default 1 MiB)",
    )
    p.add_argument(
        "--max-concurrent", type=int, default=1, help="generations running at once (default 1)"
    )
    p.add_argument(
        "--max-waiting",
        type=int,
        default=32,
        help="requests waiting for a generation slot before 503 (default 32)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow cross-origin requests from ORIGIN (repeatable; none by default)",
    )
    return p


def main(argv=None) -> int:
    """Runs the server until interrupted.

    Returns:
        The exit status (2 for bad arguments).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
    for name, value in (("--max-text-chars", args.max_text_chars),
                        ("--max-upload-bytes", args.max_upload_bytes),
                        ("--max-concurrent", args.max_concurrent)):  # fmt: skip
        if value < 1:
            print(f"error: {name} must be at least 1, got {value}", file=sys.stderr)
            return 2
    if not _is_loopback(args.host):
        print(f"warning: binding {args.host}: other machines can reach this server (no "
              "authentication)", file=sys.stderr)  # fmt: skip
    import uvicorn

    registry = ModelRegistry(args.models or [DEFAULT_MODEL], preload=not args.no_preload,
                             max_concurrent=args.max_concurrent,
                             max_waiting=max(0, args.max_waiting))  # fmt: skip
    app = create_app(registry, args.output_dir, args.host, max_text_chars=args.max_text_chars,
                     max_upload_bytes=args.max_upload_bytes,
                     cors_origins=args.cors_origin)  # fmt: skip
    print(f"serving on http://{args.host}:{args.port} (outputs in {app.state.output_dir})",
          file=sys.stderr)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port,
                log_level="info" if args.verbose else "warning")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
