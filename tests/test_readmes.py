"""Every ```python block in the READMEs and docs runs, in a folder holding the files they name."""

import re
from pathlib import Path

import mlx_audio_io as aio

import pytest
from signals import music

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted(ROOT.glob("packages/*/README.md")),
    *sorted(ROOT.glob("docs/*.md")),
]
BLOCKS = [
    pytest.param(block, id=f"{doc.relative_to(ROOT)}#{i}")
    for doc in DOCS
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(), re.S))
]


@pytest.fixture
def example_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    aio.save("speech.wav", music(88200, 44100, 1), 44100, encoding="pcm16")
    for name, seconds in [("long.wav", 5.0), ("a.wav", 1.0), ("b.wav", 1.5)]:
        aio.save(name, music(int(seconds * 44100), 44100, 2), 44100)
    aio.save("song.mp3", music(3 * 44100, 44100, 2), 44100)
    aio.save("song.flac", music(3 * 44100, 44100, 2), 44100)
    return tmp_path


def test_docs_have_examples():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("code", BLOCKS)
def test_example_runs(example_files, code):
    exec(compile(code, "<example>", "exec"), {"__name__": "__example__"})
