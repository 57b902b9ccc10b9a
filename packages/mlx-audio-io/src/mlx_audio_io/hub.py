"""Turn a model name or path into a local folder: a folder as is, a Hub repo id via the cache;
read a model folder's ``config.json`` and check its numbers.

``huggingface_hub`` is imported only when a repo id has to be fetched, so mlx-audio-io does not
depend on it (mlx-audio-tts and mlx-audio-sts do).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import re
import reprlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MAX_CONFIG_BYTES = 16 << 20  # a model's config.json is a few kB; a vocabulary or two at most

# owner/name, each 1-96 of [A-Za-z0-9_.-], not starting or ending with '.' or '-' (the Hub's rule)
_REPO_ID = re.compile(r"(?!.*(?:--|\.\.))\w(?:[\w.-]{0,94}\w)?/\w(?:[\w.-]{0,94}\w)?")


def _offline() -> bool:
    """HF_HUB_OFFLINE read now, not when huggingface_hub was imported."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _http_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's errors: httpx2 (huggingface_hub 2), httpx (1); requests' are OSErrors."""
    mods = [sys.modules.get(name) for name in ("httpx2", "httpx")]
    return tuple(mod.HTTPError for mod in mods if mod is not None and hasattr(mod, "HTTPError"))


def resolve_model_path(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    allow_patterns: str | Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """Returns the local folder (or file) holding a model.

    An existing path is returned as is. Otherwise ``name_or_path`` must be a Hub repo id
    (``"owner/name"``), fetched with ``huggingface_hub.snapshot_download`` into the Hugging Face
    cache (``HF_HUB_CACHE``; ``HF_ENDPOINT`` picks the server). Files already cached are not
    downloaded again.

    Args:
        name_or_path: A local folder or file, or a Hub repo id.
        revision: Branch, tag or commit hash of the repo; None means ``"main"``.
        allow_patterns: Glob pattern(s) of the repo files to fetch (e.g. ``"*.json"``); None
            fetches every file.
        cache_dir: The cache folder; None means ``HF_HUB_CACHE``.
        local_files_only: True uses the cache only, never the network. None follows the
            ``HF_HUB_OFFLINE`` environment variable as it is at call time.

    Returns:
        The path of the folder (for a repo, its snapshot folder in the cache).

    Raises:
        FileNotFoundError: The path does not exist and is not a repo id, the Hub has no such
            repo or revision, or the repo is not cached while offline or the Hub is unreachable.
        RuntimeError: The Hub answered with another error (server error, access denied).
        ImportError: A repo id was given and huggingface_hub is not installed.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or not _REPO_ID.fullmatch(name):
        raise FileNotFoundError(
            f"model not found: {name!r} is neither a local folder nor a Hub repo id ('owner/name')"
        )
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub import utils as hf_utils
    except ImportError as e:
        raise ImportError(
            f"loading {name!r} from the Hugging Face Hub needs huggingface_hub: "
            "pip install huggingface_hub"
        ) from e
    offline = local_files_only
    if offline is None:
        offline = _offline() or constants.HF_HUB_OFFLINE
    at = f" at revision {revision!r}" if revision else ""
    try:
        folder = snapshot_download(
            name,
            revision=revision,
            allow_patterns=allow_patterns,
            cache_dir=cache_dir,
            local_files_only=offline,
        )
    except hf_utils.HFValidationError as e:
        raise FileNotFoundError(
            f"model not found: {name!r} is neither a local folder nor a Hub repo id: {e}"
        ) from e
    except hf_utils.RevisionNotFoundError as e:
        raise FileNotFoundError(
            f"model not found: Hub repo {name!r} has no revision {revision!r}"
        ) from e
    except hf_utils.RepositoryNotFoundError as e:
        raise FileNotFoundError(
            f"model not found: {name!r} is not a local folder and the Hub has no repo of that name "
            "(a private or gated repo needs a token: `hf auth login` or HF_TOKEN)"
        ) from e
    except hf_utils.LocalEntryNotFoundError as e:
        cache = cache_dir or constants.HF_HUB_CACHE
        why = (
            "HF_HUB_OFFLINE is set (or local_files_only=True); unset it to download"
            if offline or constants.HF_HUB_OFFLINE
            else f"the Hub cannot be reached ({constants.ENDPOINT}): check the network, HF_ENDPOINT"
        )
        raise FileNotFoundError(
            f"model {name!r}{at} is not (fully) in the Hugging Face cache ({cache}) and {why}"
        ) from e
    except (hf_utils.HfHubHTTPError, OSError, *_http_errors()) as e:
        raise RuntimeError(f"download failed for {name!r}{at}: {e}") from e
    return Path(folder)


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Returns the SHA-256 of a file's bytes as 64 lowercase hex digits.

    Args:
        path: The file.
        chunk_size: Bytes read at a time.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> str:
    """Checks a file against a SHA-256 digest or its leading hex digits.

    Pretrained model registries list one per file (demucs lists 8-digit prefixes).

    Args:
        path: The file.
        expected: The full digest (64 hex digits) or a prefix of at least 8.

    Returns:
        The file's full digest.

    Raises:
        ValueError: ``expected`` is not 8 to 64 hex digits, or the file does not match.
    """
    if not re.fullmatch(r"[0-9a-fA-F]{8,64}", expected):
        raise ValueError(f"expected must be 8 to 64 hex digits of a sha256, got {expected!r}")
    actual = file_sha256(path)
    if not actual.startswith(expected.lower()):
        raise ValueError(
            f"sha256 check failed for '{os.fspath(path)}': expected {expected.lower()}, "
            f"got {actual[: len(expected)]} (full {actual}); the file is corrupt or not the one "
            "the registry names: delete it and fetch it again"
        )
    return actual


def read_config(path: str | os.PathLike) -> dict:
    """A model's ``config.json`` (or any JSON file that must hold an object) as a dict.

    Args:
        path: The file.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not UTF-8 JSON, not an object, nested too deeply, or over 16 MiB; the
            message names the file (``"loading failed for '<path>': ..."``).
    """
    path = Path(path)
    where = f"loading failed for '{path}'"
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{where}: file not found") from e
    except OSError as e:
        raise ValueError(f"{where}: {e.strerror or e}") from e
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"{where}: larger than {MAX_CONFIG_BYTES >> 20} MiB, not a config file")
    try:
        config = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except RecursionError as e:
        raise ValueError(f"{where}: not valid JSON (nested too deeply)") from e
    except ValueError as e:  # JSONDecodeError, or an integer of over 4300 digits
        raise ValueError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise ValueError(f"{where}: expected a JSON object, got a {type(config).__name__}")
    return config


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 60, 60


def check_number(name: str, value: Any, low: float, high: float, *, integer: bool = True) -> None:
    """Checks one numeric config field: an int (or, with ``integer=False``, a finite real
    number) within ``[low, high]``; bools are not numbers here.

    Raises:
        ValueError: ``"<name> must be an int in [low, high], got <value>"``.
    """
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if not (ok and low <= value <= high):  # NaN and infinities compare False
        what = "an int" if integer else "a number"
        raise ValueError(f"{name} must be {what} in [{low}, {high}], got {_SHORT.repr(value)}")


def check_type(name: str, value: Any, kind: type | tuple[type, ...], expected: str) -> None:
    """Checks a config field's type (``kind`` as for ``isinstance``).

    Raises:
        ValueError: ``"<name> must be <expected>, got <value>"``.
    """
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise ValueError(f"{name} must be {expected}, got {_SHORT.repr(value)}")


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _replace_atomically(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path`` (same suffix), renamed over ``path``
    once complete; the temporary is removed if anything fails."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{path.suffix}",
                               dir=path.parent)  # fmt: skip
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_model_folder(
    folder: str | os.PathLike,
    config: dict,
    weights: dict,
    *,
    metadata: dict[str, str] | None = None,
    indent: int = 2,
) -> Path:
    """Writes a model folder: ``model.safetensors`` (``weights``, ``{name: mx.array}``) and
    ``config.json``. Each file goes to a temporary file beside it and is renamed over the old
    one when complete, so a save that fails or is killed leaves a model that was there whole
    (weights first, so a new config never describes old weights).

    Args:
        folder: The folder (created with its parents when missing).
        config: The config, as JSON.
        weights: The arrays.
        metadata: safetensors metadata (e.g. ``{"format": "mlx"}``).
        indent: ``config.json``'s indentation.

    Returns:
        The folder, as a Path.
    """
    import mlx.core as mx

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def weights_to(tmp: str) -> None:
        mx.save_safetensors(tmp, weights, metadata=metadata)

    def config_to(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(config, indent=indent, ensure_ascii=False) + "\n")

    _replace_atomically(folder / "model.safetensors", weights_to)
    _replace_atomically(folder / "config.json", config_to)
    return folder
