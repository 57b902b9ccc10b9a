"""What the servers share: the models they may serve (loaded once, by an allow-list, never a
path a client names), their voices, and generation run in worker threads, bounded in number
and cancellable between chunks, handed to asyncio as it comes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlx_audio_io  # noqa: F401  (first: the BLAS preload must run before mlx.core)

import numpy as np

from .models.orpheus.protocol import VOICES as ORPHEUS_VOICES

__all__ = ["KOKORO_VOICES", "Busy", "ModelRegistry"]

#: hexgrad/Kokoro-82M v1.0's 54 voices (the list when a model's own files cannot be listed)
KOKORO_VOICES = (
    "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole",
    "af_nova", "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir",
    "am_liam", "am_michael", "am_onyx", "am_puck", "am_santa", "bf_alice", "bf_emma",
    "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_george", "bm_lewis", "ef_dora",
    "em_alex", "em_santa", "ff_siwis", "hf_alpha", "hf_beta", "hm_omega", "hm_psi", "if_sara",
    "im_nicola", "jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo", "pf_dora",
    "pm_alex", "pm_santa", "zf_xiaobei", "zf_xiaoni", "zf_xiaoxiao", "zf_xiaoyi", "zm_yunjian",
    "zm_yunxi", "zm_yunxia", "zm_yunyang",
)  # fmt: skip
_VOICE_SUFFIXES = (".pt", ".safetensors")


class Busy(RuntimeError):
    """Every generation slot is taken and the waiting line is full (HTTP 503)."""


def _is_orpheus(model) -> bool:
    from .models.orpheus import OrpheusModel

    return isinstance(model, OrpheusModel)


class ModelRegistry:
    """The models a server may serve, each loaded once and shared by every client.

    Args:
        models: Model ids or folders the server may load (the first is the default); a
            client can only pick among them (by the id, or the folder's name).
        preload: Load the default model now rather than at the first request.
        max_concurrent: Generations running at once (1: serialised, the safe choice on a
            CPU: they share the cores and the memory bandwidth).
        max_waiting: Requests allowed to wait for a slot; beyond that :class:`Busy`.
        loader: ``name -> model`` (default :func:`mlx_audio_tts.utils.load_model`); what it
            returns is evaluated in full (:func:`mlx_audio_tts.utils.materialize`) before any
            generation thread uses it.

    Raises:
        ValueError: No models, or bad bounds.
    """

    def __init__(self, models: Iterable[str], preload: bool = True, max_concurrent: int = 1,
                 max_waiting: int = 32, loader=None):  # fmt: skip
        self.names = [str(m) for m in models]
        if not self.names:
            raise ValueError("a server needs at least one model")
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError("max_concurrent must be >= 1 and max_waiting >= 0")
        if loader is None:
            from .utils import load_model as loader
        self._loader = loader
        self._models: dict[str, object] = {}
        self._load_lock = threading.Lock()
        self.max_concurrent, self.max_waiting = max_concurrent, max_waiting
        # long-lived workers: MLX keeps a stream (and an OS thread) per thread that used it
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="tts-generation")
        self._admit = threading.BoundedSemaphore(max_concurrent + max_waiting)
        self._active = 0
        self._count_lock = threading.Lock()
        if preload:
            self.get()

    @property
    def default(self) -> str:
        return self.names[0]

    def resolve(self, name: str | None = None) -> str:
        """The allowed model ``name`` stands for (None: the default; also matches a folder's
        last component).

        Raises:
            ValueError: Not one of the served models (the message lists them).
        """
        if name is None or name == "":
            return self.default
        for known in self.names:
            if name == known or name == Path(known).name:
                return known
        served = [Path(k).name if Path(k).expanduser().exists() else k for k in self.names]
        raise ValueError(f"unknown model {str(name)[:100]!r}; this server serves: "
                         f"{', '.join(served)}")  # fmt: skip

    def public_name(self, name: str | None = None) -> str:
        """A served model's id as clients see it: a local folder by its name, never its
        path (a Hub id as it is); :meth:`resolve` takes it back."""
        key = self.resolve(name)
        return Path(key).name if Path(key).expanduser().exists() else key

    def get(self, name: str | None = None):
        """The loaded model (loading it on first use)."""
        key = self.resolve(name)
        with self._load_lock:
            if key not in self._models:
                from .utils import materialize

                self._models[key] = materialize(self._loader(key))
            return self._models[key]

    @property
    def active(self) -> int:
        """Generations admitted and not finished (running or waiting)."""
        with self._count_lock:
            return self._active

    def close(self) -> None:
        """Stops taking generations; waits for those running to stop."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def kind(self, name: str | None = None) -> str:
        """``"orpheus"``, ``"csm"`` or ``"kokoro"``."""
        model = self.get(name)
        if _is_orpheus(model):
            return "orpheus"
        return "csm" if type(model).__name__ == "CSM" else "kokoro"

    def voices(self, name: str | None = None) -> list[str]:
        """The voices of a model: Orpheus' eight; CSM's speaker ids ``"0"`` and ``"1"`` (its
        voice comes from reference audio); Kokoro's voice files in its folder, else in its Hub
        repo, else the official list."""
        key = self.resolve(name)
        model = self.get(key)
        if _is_orpheus(model):
            return list(ORPHEUS_VOICES)
        if self.kind(key) == "csm":
            return ["0", "1"]
        folder = getattr(model, "folder", None)
        found: set[str] = set()
        for base in [Path(folder), Path(folder) / "voices"] if folder else []:
            if base.is_dir():
                found |= {p.stem for p in base.iterdir() if p.suffix in _VOICE_SUFFIXES}
        if not found and not Path(key).expanduser().exists():
            try:
                from huggingface_hub import list_repo_files

                found = {Path(f).stem for f in list_repo_files(key)
                         if f.startswith("voices/") and f.endswith(_VOICE_SUFFIXES)}  # fmt: skip
            except Exception:  # noqa: BLE001 - offline or not a repo: the official list
                found = set()
        return sorted(found) if found else list(KOKORO_VOICES)

    def default_voice(self, name: str | None = None) -> str:
        """``"tara"`` for Orpheus, ``"0"`` for CSM, ``"af_heart"`` for Kokoro if it has it,
        else its first."""
        if self.kind(name) in ("orpheus", "csm"):
            return "tara" if self.kind(name) == "orpheus" else "0"
        voices = self.voices(name)
        return "af_heart" if "af_heart" in voices else voices[0]

    async def stream(self, text: str, *, model: str | None = None,
                     cancel: threading.Event | None = None,
                     **kwargs) -> AsyncIterator[tuple[np.ndarray, dict]]:  # fmt: skip
        """:func:`mlx_audio_tts.generate.stream_chunks` in a worker thread, its chunks handed
        to the event loop as they come. At most ``max_concurrent`` run at once; the rest wait
        their turn (:class:`Busy` past ``max_waiting``). Setting ``cancel``, or closing this
        iterator (a client gone), stops the generation at its next chunk.

        Raises:
            Busy: No room to wait.
            ValueError, RuntimeError: As ``stream_chunks`` (argument errors come before any
                chunk).
        """
        from .generate import stream_chunks

        key = self.resolve(model)
        if not self._admit.acquire(blocking=False):
            raise Busy("the server is busy: every generation slot and waiting place is taken")
        cancel = cancel or threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()

        def put(item) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                if cancel.is_set():
                    return
                chunks = stream_chunks(text, model_path=key, model=self.get(key), **kwargs)
                try:
                    for item in chunks:
                        if cancel.is_set():
                            break
                        put(item)
                finally:
                    chunks.close()
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting side
                put(e)
            finally:
                with self._count_lock:
                    self._active -= 1
                self._admit.release()
                put(done)

        with self._count_lock:
            self._active += 1
        try:
            self._pool.submit(work)
        except RuntimeError:  # shut down
            with self._count_lock:
                self._active -= 1
            self._admit.release()
            raise Busy("the server is shutting down") from None
        try:
            while True:
                item = await queue.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
