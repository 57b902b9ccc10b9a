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


def _first(code: str, pattern: str) -> int:
    m = re.search(pattern, code, re.M)
    return m.start() if m else len(code)


@pytest.mark.parametrize("code", BLOCKS)
def test_example_imports_mlx_audio_io_before_mlx(code):
    """mlx_audio_io loads OpenBLAS for MLX on Linux; an example that imports mlx first
    teaches the slow path (and warns)."""
    mlx = _first(code, r"^\s*(import mlx\b|from mlx(\.\w+)* import)")
    ours = _first(code, r"^\s*(import|from) (mlx_audio_\w+|fast_mp3_augment)")
    assert ours <= mlx, "import mlx_audio_io (or a package of ours) before mlx"


def test_io_quick_start_on_a_22050_hz_file(example_files, recwarn):
    """The io README's quick start saves MP3 at 192k: at 22.05 kHz (MPEG-2, at most 160k)
    it warns once and writes the nearest bitrate instead of failing."""
    aio.save("speech.wav", music(22050, 22050, 1), 22050)
    readme = (ROOT / "packages/mlx-audio-io/README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    exec(compile(code, "<quick start>", "exec"), {"__name__": "__example__"})
    assert aio.info("out.mp3").sample_rate == 22050
    assert any("cannot be coded as MP3 at 22050 Hz" in str(w.message) for w in recwarn)


REPO_URL = "https://github.com/mlx-audio/mlx-audio/blob/main/"


@pytest.mark.parametrize(
    "readme", sorted(ROOT.glob("packages/*/README.md")), ids=lambda p: p.parent.name
)
def test_package_readme_links_work_on_a_package_index(readme):
    """A package's README is its PyPI page, where relative links lead nowhere: they point at
    the repository, at files that exist."""
    links = re.findall(r"\]\(([^)\s]+)\)", readme.read_text())
    relative = [u for u in links if not re.match(r"[a-z]+:|#", u)]
    assert not relative, relative
    for url in links:
        if url.startswith(REPO_URL):
            path, _, anchor = url[len(REPO_URL) :].partition("#")
            assert (ROOT / path).exists(), url
            if anchor and path.endswith(".md"):  # a heading of that page, as GitHub names it
                assert anchor in _heading_anchors(ROOT / path), url


def _heading_anchors(page) -> set[str]:
    """The anchors GitHub (and mkdocs' toc) give a page's headings: lower case, punctuation
    dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", page.read_text(), re.M)
    return {re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", h.lower())) for h in headings}


def test_every_docs_page_is_in_the_site_nav():
    """`make docs` builds the site from mkdocs.yml's nav (and fails on a page left out); this
    says which page, without building."""
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    missing = [p for p in pages if f": {p}\n" not in nav]
    assert not missing, f"add these to mkdocs.yml's nav: {missing}"
