"""resolve_model_path against a local folder and the real huggingface_hub on a loopback Hub."""

import hashlib
import json
import re
import sys
import urllib.request
from pathlib import Path

from mlx_audio_io.hub import file_sha256, resolve_model_path, verify_sha256

import pytest


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def model_dir(tmp_path):
    """A model folder as the loaders will read it: config, weights, a voice in a subfolder."""
    d = tmp_path / "tiny"
    (d / "voices").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "tiny", "dim": 4}')
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 300)
    (d / "voices" / "af.bin").write_bytes(b"\x01\x02" * 1000)
    return d


def _no_resolve(hub_server) -> bool:
    return not [r for r in hub_server.requests if "/resolve/" in r[1]]


def test_local_folder_passes_through(model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not needed for a path
    assert resolve_model_path(model_dir) == model_dir
    assert resolve_model_path(str(model_dir)) == model_dir
    weights = model_dir / "model.safetensors"
    assert resolve_model_path(str(weights)) == weights


def test_repo_downloaded(hub_server, hub_env, model_dir):
    commit = hub_server.add_repo("me/tiny", model_dir)
    path = resolve_model_path("me/tiny")
    assert path.is_relative_to(hub_env) and path.name == commit
    assert _files(path) == _files(model_dir)
    # the cache's blob of an LFS file is named by its sha256, as on the Hub
    blob = (path / "model.safetensors").resolve()
    assert blob.name == file_sha256(model_dir / "model.safetensors")


def test_allow_patterns(hub_server, hub_env, model_dir):
    hub_server.add_repo("me/tiny", model_dir)
    path = resolve_model_path("me/tiny", allow_patterns=["*.json", "voices/*"])
    assert sorted(_files(path)) == ["config.json", "voices/af.bin"]
    path = resolve_model_path("me/tiny", allow_patterns="*.safetensors")
    assert sorted(_files(path)) == ["config.json", "model.safetensors", "voices/af.bin"]


def test_second_call_from_cache(hub_server, hub_env, model_dir):
    hub_server.add_repo("me/tiny", model_dir)
    first = resolve_model_path("me/tiny")
    hub_server.requests.clear()
    assert resolve_model_path("me/tiny") == first
    assert hub_server.requests and _no_resolve(hub_server)  # the commit is asked, no file is
    hub_server.stop()  # the Hub gone: the cached snapshot still answers
    assert resolve_model_path("me/tiny") == first


def test_revision(hub_server, hub_env, model_dir, tmp_path):
    main = hub_server.add_repo("me/tiny", model_dir)
    v1_dir = tmp_path / "v1"
    v1_dir.mkdir()
    (v1_dir / "config.json").write_text('{"model_type": "tiny", "dim": 8}')
    v1 = hub_server.add_repo("me/tiny", v1_dir, revision="v1")
    assert _files(resolve_model_path("me/tiny", revision="v1")) == _files(v1_dir)
    assert _files(resolve_model_path("me/tiny", revision=main)) == _files(model_dir)
    assert resolve_model_path("me/tiny", revision=v1).name == v1
    with pytest.raises(FileNotFoundError, match="Hub repo 'me/tiny' has no revision 'v9'"):
        resolve_model_path("me/tiny", revision="v9")


def test_offline_uses_cache(hub_server, hub_env, model_dir, monkeypatch):
    hub_server.add_repo("me/tiny", model_dir)
    hub_server.add_repo("me/other", model_dir)
    path = resolve_model_path("me/tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after huggingface_hub was imported
    hub_server.requests.clear()
    assert resolve_model_path("me/tiny") == path
    msg = r"model 'me/other' is not \(fully\) in the Hugging Face cache \(.*\) and HF_HUB_OFFLINE"
    with pytest.raises(FileNotFoundError, match=msg) as e:
        resolve_model_path("me/other")
    assert e.value.__cause__ is not None
    assert hub_server.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE is set"):
        resolve_model_path("me/other", local_files_only=True)
    assert resolve_model_path("me/other", local_files_only=False).is_dir()


def test_offline_incomplete_snapshot(hub_server, hub_env, model_dir, monkeypatch):
    hub_server.add_repo("me/tiny", model_dir)
    resolve_model_path("me/tiny", allow_patterns="*.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_path("me/tiny", allow_patterns="*.json").is_dir()
    with pytest.raises(
        FileNotFoundError, match=r"'me/tiny' is not \(fully\) in the Hugging Face cache"
    ):
        resolve_model_path("me/tiny")  # the weights were never fetched


def test_hub_unreachable(hub_server, hub_env, model_dir):
    hub_server.add_repo("me/tiny", model_dir)
    hub_server.stop()
    with pytest.raises(FileNotFoundError, match=r"'me/tiny' .* the Hub cannot be reached") as e:
        resolve_model_path("me/tiny")
    assert hub_server.endpoint in str(e.value)


def test_missing_repo(hub_server, hub_env):
    with pytest.raises(FileNotFoundError, match="'me/nothing' is not a local folder and the Hub"):
        resolve_model_path("me/nothing")
    assert hub_server.requests  # it did ask


@pytest.mark.parametrize(
    "name",
    ["./missing/folder", "a/b/c", "missing_folder", "/abs/missing", "owner/", "-a/b", "a--b/c"],
)
def test_neither_path_nor_repo(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = f"model not found: '{re.escape(name)}' is neither a local folder nor a Hub repo id"
    with pytest.raises(FileNotFoundError, match=msg):
        resolve_model_path(name)


def test_missing_path_object_is_not_a_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="'owner/name' is neither a local folder"):
        resolve_model_path(Path("owner/name"))


def test_import_error_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match="needs huggingface_hub: pip install huggingface_hub"):
        resolve_model_path("me/tiny")


def test_sha256_helpers(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights" * 100_000)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_sha256(f) == digest
    assert file_sha256(f, chunk_size=7) == digest
    assert verify_sha256(f, digest) == digest
    assert verify_sha256(f, digest[:8].upper()) == digest
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:8]
    with pytest.raises(ValueError, match=f"sha256 check failed for '{re.escape(str(f))}'"):
        verify_sha256(f, wrong)
    for bad in ["abc", "xyz12345", digest + "0"]:
        with pytest.raises(ValueError, match="expected must be 8 to 64 hex digits"):
            verify_sha256(f, bad)


def test_hf_hub_download_and_errors(hub_server, hub_env, model_dir):
    """The server also answers single-file downloads and the client's own exceptions."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError

    hub_server.add_repo("me/tiny", model_dir)
    got = hf_hub_download("me/tiny", "voices/af.bin")
    assert Path(got).read_bytes() == (model_dir / "voices" / "af.bin").read_bytes()
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("me/tiny", "nope.bin")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("me/nothing", "config.json")


def test_server_range_requests(hub_server, model_dir):
    hub_server.add_repo("me/tiny", model_dir)
    url = f"{hub_server.endpoint}/me/tiny/resolve/main/model.safetensors"
    data = (model_dir / "model.safetensors").read_bytes()
    req = urllib.request.Request(url, headers={"Range": "bytes=10-"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 206 and r.read() == data[10:]
        assert r.headers["Content-Range"] == f"bytes 10-{len(data) - 1}/{len(data)}"
    req = urllib.request.Request(url, headers={"Range": "bytes=3-5"})
    with urllib.request.urlopen(req) as r:
        assert r.read() == data[3:6]


def test_save_model_folder_replaces_files_whole(tmp_path, monkeypatch):
    """Each file goes through a temporary beside it: a save that fails part-way leaves the
    folder's model as it was, and no temporary behind."""
    from mlx_audio_io import hub

    import mlx.core as mx

    folder = hub.save_model_folder(tmp_path / "m", {"a": 1}, {"w": mx.ones((2, 3))},
                                   metadata={"format": "mlx"})  # fmt: skip
    assert json.loads((folder / "config.json").read_text()) == {"a": 1}
    assert mx.load(str(folder / "model.safetensors"))["w"].shape == (2, 3)

    def broken(tmp, *args, **kwargs):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(mx, "save_safetensors", broken)
    with pytest.raises(OSError, match="disk full"):
        hub.save_model_folder(folder, {"a": 2}, {"w": mx.zeros((5,))})
    assert json.loads((folder / "config.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
