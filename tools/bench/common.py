"""Helpers shared by the benchmark scripts: machine facts, versions, and the venv probes of
the public packages they compare against."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


def read_proc(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a /proc file, if present."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name."""
    return read_proc("/proc/cpuinfo", "model name") or platform.processor() or "unknown"


def ram_total() -> str:
    """Physical memory, as ``"23.5 GiB"``."""
    mem_kb = read_proc("/proc/meminfo", "MemTotal")
    return f"{int(mem_kb.split()[0]) / 2**20:.1f} GiB" if mem_kb else "unknown"


def machine_line() -> str:
    """The ``- CPU: ...; cores: ...; RAM: ...; OS: ...`` line of a Machine section."""
    return (f"- CPU: {cpu_model()}; cores: {os.cpu_count()}; RAM: {ram_total()}; "
            f"OS: {platform.system()} {platform.release()}")  # fmt: skip


def version(dist: str) -> str:
    """Installed version of a distribution (or of its imported module), or "not installed"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(dist.replace("-", "_"))
        return getattr(module, "__version__", "not installed")


def text_tail(text: str, n: int = 30) -> str:
    """The last ``n`` non-empty lines of ``text``."""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-n:])


def first_error(log: str) -> str:
    """The first line of ``log`` that mentions an error or failure, else its last line."""
    lines = [" ".join(ln.split()) for ln in log.splitlines() if ln.strip()]
    hits = [ln for ln in lines if "error" in ln.lower() or "failed" in ln.lower()]
    return (hits or lines or ["no output"])[0 if hits else -1][:200]


def probe_venv(python: Path, code: str, env: dict) -> dict | None:
    """Runs ``code`` (which prints one JSON line last) with a venv's Python, isolated; its
    result, or None when the venv or the package in it is missing or broken."""
    if not python.exists():
        return None
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", code], capture_output=True, text=True, env=env, timeout=300
        )
        return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


@dataclass
class Anchor:
    """A public package's own venv: its Python when usable (else why not) and how it was
    obtained."""

    python: Path | None
    error: str | None = None
    setup: str = ""
    probe: dict = field(default_factory=dict)


@dataclass
class ExternalPeer:
    """A peer timed outside our process: its column name, its venv and that venv's state, the
    worker script its Python runs, and the worker's tasks (named like the rows they fill)."""

    name: str
    venv: Path
    worker: Path
    specs: list[dict]
    state: Anchor

    @property
    def label(self) -> str:
        """The venv's path as shown in the report, e.g. ``.bench/torch-venv``."""
        return f"{self.venv.parent.name}/{self.venv.name}"


class Footnotes:
    """Numbered markdown footnotes, deduplicated by text."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, text: str) -> str:
        """The marker of ``text``, adding it when new."""
        if text not in self.items:
            self.items.append(text)
        return f"[^{self.items.index(text) + 1}]"

    def lines(self) -> list[str]:
        """The footnote definitions."""
        return [f"[^{i}]: {t}" for i, t in enumerate(self.items, 1)]


def write_report(path: Path, lines: list[str]) -> None:
    """Writes a benchmark's Markdown report to ``path`` and prints it."""
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {path}")


def use_mlx_layers(model) -> None:
    """Undoes ``mlx_audio_io.quant.use_fast_layers``: every switched layer back to MLX's own
    class (its kernels), e.g. for a reference row."""
    import mlx.nn as nn

    bases = (nn.QuantizedLinear, nn.QuantizedEmbedding, nn.Linear, nn.Embedding)
    for _, module in model.named_modules():
        for base in bases:
            if isinstance(module, base):
                module.__class__ = base
                break
