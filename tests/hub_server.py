"""A loopback Hugging Face Hub: serves local folders as model repos to the real huggingface_hub.

It answers the calls ``snapshot_download`` and ``hf_hub_download`` make (huggingface_hub 0.24 to
2.x), and nothing else:

- ``GET /api/models/{repo_id}[/revision/{revision}]``: repo info (``id``, ``sha``, ``siblings``).
- ``GET /api/models/{repo_id}/tree/{revision}[/{path}]?recursive=...``: the file listing.
- ``HEAD`` and ``GET /{repo_id}/resolve/{revision}/{filename}``: ``X-Repo-Commit``, ``ETag`` (the
  sha256, as the Hub gives LFS files), ``Content-Length``, and single ``Range`` requests.

Errors carry the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``)
so the client raises its own exceptions. No response names Xet storage (no ``X-Xet-Hash`` header,
no ``xetHash`` in listings), so the client downloads over plain HTTP even with hf_xet installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("info", re.compile(rf"/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?")),
    ("tree", re.compile(rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?")),
    ("resolve", re.compile(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)")),
]
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class _File:
    path: Path
    size: int
    sha256: str
    git_oid: str  # git blob sha1, the tree listing's "oid"


@dataclass(frozen=True)
class _Snapshot:
    commit: str
    files: dict[str, _File]  # repo path ('/'-separated) -> file


def _snapshot(folder: Path) -> _Snapshot:
    """Hashes every file under ``folder`` (except ``.git``); the commit id hashes them all."""
    files = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if not p.is_file() or rel.split("/")[0] == ".git":
            continue
        data = p.read_bytes()
        git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        files[rel] = _File(p, len(data), hashlib.sha256(data).hexdigest(), git)
    commit = hashlib.sha1(json.dumps([(k, f.sha256) for k, f in files.items()]).encode())
    return _Snapshot(commit.hexdigest(), files)


class HubServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) serving folders as Hub model repos.

    Attributes:
        endpoint: ``http://127.0.0.1:<port>``, the value for ``HF_ENDPOINT``.
        requests: ``(method, path)`` of every request served, in order.
    """

    def __init__(self) -> None:
        self._repos: dict[str, dict[str, _Snapshot]] = {}
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and frees the port (later requests get "connection refused")."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def add_repo(self, repo_id: str, folder: str | os.PathLike, revision: str = "main") -> str:
        """Serves ``folder``'s current files as ``repo_id`` at branch ``revision``.

        Returns:
            The commit hash (40 hex digits), also accepted as a revision.
        """
        snap = _snapshot(Path(folder))
        with self._lock:
            self._repos.setdefault(repo_id, {})[revision] = snap
        return snap.commit

    def _lookup(self, repo_id: str, revision: str | None) -> tuple[bool, _Snapshot | None]:
        """Whether the repo exists, and its snapshot at ``revision`` (a branch or a commit)."""
        with self._lock:
            branches = self._repos.get(repo_id, {})
            by_commit = {snap.commit: snap for snap in branches.values()}
            return bool(branches), by_commit.get(revision) or branches.get(revision or "main")


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after stop()

        def log_message(self, format, *args):  # noqa: A002  (quiet: pytest shows failures)
            pass

        def do_HEAD(self):
            self._dispatch(body=False)

        def do_GET(self):
            self._dispatch(body=True)

        def _dispatch(self, body: bool) -> None:
            url = urlsplit(self.path)
            hub.requests.append((self.command, url.path))
            for kind, pattern in _ROUTES:
                m = pattern.fullmatch(url.path)
                if m is None:
                    continue
                rev = unquote(m["rev"]) if m["rev"] else None
                known, snap = hub._lookup(unquote(m["repo"]), rev)
                if not known:
                    return self._error(404, "RepoNotFound", body)
                if snap is None:
                    return self._error(404, "RevisionNotFound", body)
                path = unquote(m.groupdict().get("path") or "")
                if kind == "info":
                    return self._json(_info(unquote(m["repo"]), snap), body)
                if kind == "tree":
                    recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower()
                    return self._json(_tree(snap, path, recursive in ("true", "1")), body)
                return self._file(snap, path, body)
            self._error(404, "", body)

        def _send(self, status, headers, data: bytes, body: bool, length: int | None = None):
            """Sends a response; HEAD (``body`` False) gets the headers with the GET's length."""
            self.send_response(status)
            length = len(data) if length is None else length
            for key, value in {**headers, "Content-Length": str(length)}.items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _json(self, obj: object, body: bool) -> None:
            self._send(200, {"Content-Type": "application/json"}, json.dumps(obj).encode(), body)

        def _error(self, status: int, code: str, body: bool, commit: str = "") -> None:
            headers = {"Content-Type": "application/json", "X-Error-Message": code or "Not Found"}
            if code:
                headers["X-Error-Code"] = code
            if commit:
                headers["X-Repo-Commit"] = commit
            self._send(status, headers, json.dumps({"error": code}).encode(), body)

        def _file(self, snap: _Snapshot, path: str, body: bool) -> None:
            f = snap.files.get(path)
            if f is None:
                return self._error(404, "EntryNotFound", body, commit=snap.commit)
            headers = {
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
                "ETag": f'"{f.sha256}"',
                "X-Repo-Commit": snap.commit,
            }
            start, stop, status = 0, f.size, 200
            m = _RANGE.fullmatch(self.headers.get("Range", ""))
            if m and m[1]:
                start = min(int(m[1]), f.size)
                stop = min(int(m[2]) + 1, f.size) if m[2] else f.size
                status = 206
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{f.size}"
            with open(f.path, "rb") as fh:
                fh.seek(start)
                data = fh.read(stop - start) if body else b""
            self._send(status, headers, data, body, length=stop - start)

    return Handler


def _info(repo_id: str, snap: _Snapshot) -> dict:
    return {
        "_id": snap.commit[:24],
        "id": repo_id,
        "modelId": repo_id,
        "sha": snap.commit,
        "private": False,
        "gated": False,
        "disabled": False,
        "tags": [],
        "lastModified": "2025-01-01T00:00:00.000Z",
        "siblings": [{"rfilename": name} for name in snap.files],
    }


def _tree(snap: _Snapshot, prefix: str, recursive: bool) -> list[dict]:
    """Files and folders under ``prefix``: direct children, or all descendants if recursive."""
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    entries: dict[str, dict] = {}
    for name, f in snap.files.items():
        if not name.startswith(base):
            continue
        parts = name[len(base) :].split("/")
        for i in range(1, len(parts)):  # the folders on the way down
            folder = base + "/".join(parts[:i])
            oid = hashlib.sha1(folder.encode()).hexdigest()
            entries.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
            if not recursive:
                break
        if recursive or len(parts) == 1:
            lfs = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries[name] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": name}
            entries[name]["lfs"] = lfs
    return list(entries.values())


def use_hub(monkeypatch, endpoint: str, home: str | os.PathLike) -> Path:
    """Points huggingface_hub at ``endpoint`` with its home and cache under ``home``.

    huggingface_hub reads its environment once, at import, into ``huggingface_hub.constants``
    (some modules copy a constant with ``from ..constants import``), so the constants and their
    copies are patched too, and the fixture works whatever was imported first. Offline mode, tokens
    and telemetry are switched off.

    Returns:
        The hub cache folder (``<home>/hub``).
    """
    home = Path(home)
    cache = home / "hub"
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    paths = {
        "HF_HOME": home,
        "HF_HUB_CACHE": cache,
        "HF_ASSETS_CACHE": home / "assets",
        "HF_XET_CACHE": home / "xet",
        "HF_TOKEN_PATH": home / "token",
    }
    env = {name: str(path) for name, path in paths.items()}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_DISABLE_TELEMETRY="1")
    env["NO_PROXY"] = ",".join(filter(None, ["127.0.0.1", os.environ.get("NO_PROXY")]))
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    try:
        from huggingface_hub import constants
    except ImportError:
        return cache
    old = vars(constants).copy()
    new = {"ENDPOINT": endpoint, "HF_HUB_OFFLINE": False, "HF_HUB_DISABLE_TELEMETRY": True}
    new["HUGGINGFACE_CO_URL_TEMPLATE"] = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    old_home = old["HF_HOME"]
    for name, value in old.items():  # every path under the old home: tokens, locks, xet, ...
        if isinstance(value, str) and (value == old_home or value.startswith(old_home + os.sep)):
            new[name] = str(home) + value[len(old_home) :]
    new.update({name: str(path) for name, path in paths.items()})
    new["HUGGINGFACE_HUB_CACHE"] = str(cache)
    for name, value in new.items():
        if name in old:
            monkeypatch.setattr(constants, name, value)
    for mod in [m for n, m in sys.modules.items() if n.startswith("huggingface_hub.") and m]:
        for name, value in new.items():
            copied = name in old and name in vars(mod) and vars(mod)[name] is old[name]
            if copied and mod is not constants:
                monkeypatch.setattr(mod, name, value)
    reset_session()
    return cache


def reset_session() -> None:
    """Drops huggingface_hub's shared HTTP client so the next one reads the patched environment."""
    try:
        from huggingface_hub.utils import close_session
    except ImportError:  # huggingface_hub < 1.0 opens a requests session per thread
        return
    close_session()
