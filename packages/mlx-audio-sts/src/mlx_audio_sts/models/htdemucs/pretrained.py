"""Named HTDemucs models and loading from a name, a folder, a file or a Hub repo.

The released weights are data (as in demucs): each name is a bag of signatures, published
by demucs' author on the Hugging Face Hub in demucs' own form (``{name}.yaml`` plus one
``{sig}.safetensors`` per model) and as ``.th`` files whose names carry the first 8 hex digits
of their sha256. Both are converted on load; ``mlx-audio-sts convert`` writes our folder form.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlx_audio_io.hub import check_number, check_type, read_config

import mlx.core as mx

from .apply import BagOfModels
from .config import to_fraction
from .convert import build, load_demucs_safetensors, load_th

# name -> Hub repo (demucs.hf.hf_repo_name) and the signatures of its bag
PRETRAINED = {
    "htdemucs": ("adefossez/HTDemucs", ["955717e8"]),
    "htdemucs_ft": ("adefossez/HTDemucs-ft", ["f7e0c4bc", "d12395a8", "92cfc3b6", "04573f0d"]),
    "htdemucs_6s": ("adefossez/HTDemucs-6s", ["5c90dfd2"]),
}
_SIGNATURE = re.compile(r"\w[\w.-]{0,99}")
# sha256 prefixes of the legacy .th files (demucs/remote/files.txt)
TH_FILES = {
    "955717e8": "8726e21a", "f7e0c4bc": "ba3fe64a", "d12395a8": "e57c48e6",
    "92cfc3b6": "ef3bcb9c", "04573f0d": "f3cf25b2", "5c90dfd2": "34c22ccb",
}  # fmt: skip


def _parse_yaml(path: Path) -> dict:
    """demucs' bag file: ``models``, optional ``weights`` and ``segment``."""
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"loading failed for '{path}': not a valid YAML bag file") from e
    if not isinstance(spec, dict) or not isinstance(spec.get("models"), list) or not spec["models"]:
        raise ValueError(f"loading failed for '{path}': no 'models' list in the bag file")
    spec["models"] = [_signature(m, path) for m in spec["models"]]
    return spec


def _signature(sig, where) -> str:
    """A model's signature, safe as a file name: ``955717e8`` (YAML may read it as an int)."""
    text = str(sig) if isinstance(sig, str | int) and not isinstance(sig, bool) else ""
    if not _SIGNATURE.fullmatch(text):
        raise ValueError(
            f"loading failed for '{where}': a model signature must be a short name of letters, "
            f"digits, '_', '-' and '.', got {sig!r:.100}"
        )
    return text


def _find_model_file(folder: Path, sig: str) -> Path:
    for pattern in (f"{sig}.safetensors", f"{sig}.th", f"{sig}-*.th"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"model '{sig}' not found in '{folder}' (looked for {sig}.safetensors, {sig}-*.th)"
    )


def _load_file(path: Path):
    if path.suffix == ".th":
        m = re.fullmatch(r"([0-9a-f]{8})-([0-9a-f]{8})\.th", path.name)
        if m:  # demucs names files after their checksum and checks it on load
            from mlx_audio_io.hub import verify_sha256

            verify_sha256(path, m.group(2))
        model = load_th(path)
    elif path.suffix == ".safetensors":
        model = load_demucs_safetensors(path)
    else:
        raise ValueError(f"loading failed for '{path}': expected a .th, .safetensors or .yaml file")
    model.signature = path.stem.split("-")[0]
    return model


def _bag(models, spec: dict, where):
    """One model, or a ``BagOfModels`` with the spec's ``weights`` and ``segment``."""
    weights, segment = spec.get("weights"), spec.get("segment")
    if len(models) == 1 and weights is None and segment is None:
        return models[0]
    try:
        if weights is not None:
            check_type("weights", weights, list, "a list of per-source weight lists")
            for i, row in enumerate(weights):
                check_type(f"weights[{i}]", row, list, "a list of numbers")
                for j, w in enumerate(row):
                    check_number(f"weights[{i}][{j}]", w, -1e6, 1e6, integer=False)
        return BagOfModels(models, weights, None if segment is None else to_fraction(segment))
    except ValueError as e:
        raise ValueError(f"loading failed for '{where}': {e}") from e


def _load_ours(folder: Path):
    where = folder / "config.json"
    config = read_config(where)
    if config.get("model_type") != "htdemucs":
        raise ValueError(
            f"loading failed for '{where}': model_type is {config.get('model_type')!r:.100}, "
            "expected 'htdemucs'"
        )
    entries = config.get("models")
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(e, dict) and isinstance(e.get("file"), str) for e in entries)
    ):
        raise ValueError(
            f"loading failed for '{where}': 'models' must be a list of {{file, config}} entries"
        )
    models = []
    for entry in entries:
        file = entry["file"]
        if Path(file).name != file or not file.endswith(".safetensors"):
            raise ValueError(
                f"loading failed for '{where}': a model file must be a .safetensors file "
                f"in the same folder, got {file!r:.100}"
            )
        try:
            state = mx.load(str(folder / file))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"loading failed for '{folder / file}': {e}") from e
        model = build(entry.get("config"), state, torch_layout=False, where=str(where))
        model.signature = _signature(entry.get("signature", Path(file).stem), where)
        models.append(model)
    return _bag(models, config, where)


def load_local(path, name: str | None = None):
    """A model or bag from a local file or folder (ours, demucs' Hub form, or ``.th`` files).

    Args:
        path: ``config.json`` folder; a folder with a demucs bag ``.yaml`` (``name.yaml`` when
            several) and its models; or one ``.yaml``, ``.th`` or demucs ``.safetensors`` file.
        name: Which bag to take from a folder that holds several.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            spec = _parse_yaml(path)
            models = [_load_file(_find_model_file(path.parent, s)) for s in spec["models"]]
            return _bag(models, spec, path)
        return _load_file(path)
    if (path / "config.json").is_file():
        return _load_ours(path)
    yamls = sorted(path.glob("*.yaml"))
    if name and (path / f"{name}.yaml").is_file():
        return load_local(path / f"{name}.yaml")
    if len(yamls) == 1:
        return load_local(yamls[0])
    singles = sorted(path.glob("*.th")) + sorted(path.glob("*.safetensors"))
    if not yamls and len(singles) == 1:
        return _load_file(singles[0])
    raise FileNotFoundError(
        f"no HTDemucs model found in '{path}': expected config.json, one bag .yaml or one "
        f".th/.safetensors file (found {[p.name for p in yamls + singles]})"
    )


def from_pretrained(name_or_path, revision: str | None = None):
    """``HTDemucs`` (one model) or ``BagOfModels`` by name, path or Hub repo id.

    Args:
        name_or_path: ``"htdemucs"``, ``"htdemucs_ft"``, ``"htdemucs_6s"`` (demucs' releases,
            fetched from the Hub), a local path (see :func:`load_local`), or a Hub repo id
            holding either our folder form or demucs' Hub form.
        revision: Hub revision (branch, tag or commit).

    Raises:
        FileNotFoundError: Unknown name, missing path, or not in the cache when offline.
    """
    from mlx_audio_io.hub import resolve_model_path

    key = str(name_or_path)
    if key in PRETRAINED and not Path(key).exists():
        repo, sigs = PRETRAINED[key]
        patterns = [f"{key}.yaml"] + [f"{s}.safetensors" for s in sigs]
        folder = resolve_model_path(repo, revision=revision, allow_patterns=patterns)
        return load_local(folder, name=key)
    if not Path(key).expanduser().exists() and "/" not in key:
        raise FileNotFoundError(
            f"unknown model {key!r}: not a local path, a Hub repo id or one of "
            f"{', '.join(PRETRAINED)}"
        )
    return load_local(resolve_model_path(name_or_path, revision=revision))
