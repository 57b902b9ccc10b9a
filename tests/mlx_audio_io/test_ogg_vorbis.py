"""Ogg Vorbis decodes through our own Ogg page walk and libav's Vorbis decoder; libvorbisfile
(MLX_AUDIO_IO_VORBISFILE=1) is the reference it must agree with: the same length, the same
samples to within float rounding (two decoders), and every window sample-exact against the
full decode. Chained and multiplexed files go to libvorbisfile."""

import struct

import mlx_audio_io as aio

import numpy as np
import pytest
from conftest import ffmpeg
from signals import music

# --- Ogg pages: enough to rewrite granule positions (and the CRC) of a real file -------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


CRC = _crc_table()


def ogg_pages(data: bytes) -> list[bytearray]:
    """The pages of an Ogg file, in order."""
    pages, i = [], 0
    while i < len(data):
        assert data[i : i + 4] == b"OggS"
        n = data[i + 26]
        size = 27 + n + sum(data[i + 27 : i + 27 + n])
        pages.append(bytearray(data[i : i + size]))
        i += size
    return pages


def with_crc(page: bytearray) -> bytes:
    """The page with its checksum recomputed."""
    page[22:26] = b"\0\0\0\0"
    c = 0
    for b in page:
        c = ((c << 8) & 0xFFFFFFFF) ^ CRC[((c >> 24) ^ b) & 0xFF]
    page[22:26] = struct.pack("<I", c)
    return bytes(page)


def shift_granules(src, dst, k: int) -> None:
    """Moves every audio page's granule position by k samples (a stream that starts later,
    or, with k < 0, one whose first page says its first k samples are to be dropped)."""
    out = []
    for p in ogg_pages(src.read_bytes()):
        g = struct.unpack("<q", p[6:14])[0]
        if g > 0:
            p[6:14] = struct.pack("<q", max(g + k, 0))
        out.append(with_crc(p))
    dst.write_bytes(b"".join(out))


# --- the files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vorbis")
    out = {}

    def wav(name, frames, sr, ch, seed):
        aio.save(d / f"{name}.wav", music(frames, sr, ch, seed=seed), sr, encoding="pcm16")
        return str(d / f"{name}.wav")

    for name, frames, sr, ch, extra in [
        ("tiny", 90, 44100, 2, []),  # less than one block
        ("short", 1323, 48000, 1, []),  # one page, first and last
        ("mono8k", 40000, 8000, 1, []),
        ("stereo", 5 * 44100 + 17, 44100, 2, []),
        ("six", 3 * 48000, 48000, 6, []),
        ("eight", 2 * 48000, 48000, 8, ["-q:a", "10"]),
        ("smallpages", 4 * 44100, 44100, 2, ["-page_duration", "5000"]),
        ("bigpages", 4 * 48000, 48000, 8, ["-q:a", "10", "-page_duration", "10000000"]),
    ]:
        src = wav(name, frames, sr, ch, seed=len(out))
        ffmpeg("-i", src, "-c:a", "libvorbis", *extra, str(d / f"{name}.ogg"))
        out[name] = d / f"{name}.ogg"
    aio.save(d / "ours.ogg", music(3 * 44100, 44100, 2, seed=9), 44100)
    out["ours"] = d / "ours.ogg"
    shift_granules(out["stereo"], d / "later.ogg", 1000)
    out["later"] = d / "later.ogg"
    shift_granules(out["stereo"], d / "much_later.ogg", 10**6)
    out["much_later"] = d / "much_later.ogg"
    shift_granules(out["short"], d / "short_later.ogg", 500)
    out["short_later"] = d / "short_later.ogg"
    data = out["stereo"].read_bytes()
    (d / "cut.ogg").write_bytes(data[: len(data) * 2 // 3])  # cut mid-page: what it holds
    out["cut"] = d / "cut.ogg"
    (d / "trailing.ogg").write_bytes(data + np.random.default_rng(0).bytes(3000))
    out["trailing"] = d / "trailing.ogg"
    return out


def _load(path, monkeypatch, reference=False, start=None, count=None):
    """The whole file, or frames [start, start + count) (as seconds that round to them)."""
    kw = {}
    if start is not None:
        sr = aio.info(path).sample_rate
        kw = {"offset": start / sr, "duration": count / sr}
    with monkeypatch.context() as m:
        if reference:
            m.setenv("MLX_AUDIO_IO_VORBISFILE", "1")
        else:
            m.delenv("MLX_AUDIO_IO_VORBISFILE", raising=False)
        return np.asarray(aio.load(path, **kw)[0])


FAST = (
    "tiny short mono8k stereo six eight smallpages bigpages ours later much_later short_later "
    "cut trailing"
).split()


@pytest.mark.parametrize("name", FAST)
def test_decode_agrees_with_libvorbisfile(files, name, monkeypatch):
    path = files[name]
    ours = _load(path, monkeypatch)
    ref = _load(path, monkeypatch, reference=True)
    assert ours.shape == ref.shape
    assert aio.info(path).frames == ours.shape[0]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-6)
    # two decoders round differently: equal arrays would mean the walk fell back
    assert not np.array_equal(ours, ref), "decoded by libvorbisfile, not the Ogg walk"


@pytest.mark.parametrize("name", FAST)
def test_every_window_is_the_same_samples(files, name, monkeypatch):
    path = files[name]
    full = _load(path, monkeypatch)
    n = full.shape[0]
    rng = np.random.default_rng(len(name))
    starts = [0, 1, n // 2, n - 1, 2047, 2048, *rng.integers(0, n, 25)]
    for start in starts:
        start = int(min(start, n - 1))
        count = int(rng.integers(1, 6000))
        got = _load(path, monkeypatch, start=start, count=count)
        np.testing.assert_array_equal(got, full[start : start + count], err_msg=f"{start}+{count}")
    sr = aio.info(path).sample_rate
    memory = np.asarray(aio.load(path.read_bytes(), offset=(n // 3) / sr, duration=5000 / sr)[0])
    np.testing.assert_array_equal(memory, full[n // 3 : n // 3 + 5000])


def test_stream_reads_the_same_samples(files, monkeypatch):
    full = _load(files["six"], monkeypatch)
    chunks = [np.asarray(c) for c, _ in aio.stream(files["six"], chunk_frames=777)]
    np.testing.assert_array_equal(np.concatenate(chunks), full)


def test_trimmed_start_drops_the_first_samples(files, tmp_path, monkeypatch):
    """A first page whose granule position is below its samples: the spec drops the
    difference from the start (libvorbisfile drops it from the page's last packet)."""
    shift_granules(files["stereo"], tmp_path / "trim.ogg", -300)
    full = _load(files["stereo"], monkeypatch)
    got = _load(tmp_path / "trim.ogg", monkeypatch)
    np.testing.assert_array_equal(got, full[300:])
    part = _load(tmp_path / "trim.ogg", monkeypatch, start=100, count=4000)
    np.testing.assert_array_equal(part, full[400:4400])


def test_chained_streams_read_every_link(files, tmp_path, monkeypatch):
    """Chains go to libvorbisfile, which opens some (a short first link) positioned in the
    second link unless told to seek back."""
    links = [files["tiny"], files["stereo"], files["ours"]]
    path = tmp_path / "chain.ogg"
    path.write_bytes(b"".join(p.read_bytes() for p in links))
    got = _load(path, monkeypatch)
    want = np.concatenate([_load(p, monkeypatch, reference=True) for p in links])
    assert aio.info(path).frames == got.shape[0] == want.shape[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    mid = _load(path, monkeypatch, start=50, count=3000)
    np.testing.assert_array_equal(mid, got[50:3050])


def _intact_around_page(original, damaged, pages, k, monkeypatch):
    """The damaged file's decode: as long as the original's, and equal to it up to two pages
    before page k and from two pages after it (where the file goes on that far)."""
    full = _load(original, monkeypatch)
    got = _load(damaged, monkeypatch)
    assert got.shape == full.shape
    before = struct.unpack("<q", pages[k - 2][6:14])[0]
    np.testing.assert_array_equal(got[:before], full[:before])
    if k + 2 < len(pages):
        after = struct.unpack("<q", pages[k + 2][6:14])[0]
        np.testing.assert_array_equal(got[after:], full[after:])
    return got


def test_damaged_page_keeps_the_length(files, tmp_path, monkeypatch):
    """A page whose packets are garbage (with a valid CRC): no error, the length exact, and
    the audio away from that page untouched."""
    pages = ogg_pages(files["stereo"].read_bytes())
    k = len(pages) // 2
    body = 27 + pages[k][26]
    rng = np.random.default_rng(1)
    pages[k][body:] = rng.integers(0, 256, len(pages[k]) - body, dtype=np.uint8).tobytes()
    path = tmp_path / "damaged.ogg"
    path.write_bytes(b"".join(with_crc(p) for p in pages))
    got = _intact_around_page(files["stereo"], path, pages, k, monkeypatch)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("where", ["middle", "before the last"])
def test_missing_page_keeps_the_length(files, tmp_path, monkeypatch, where):
    """A page lost: silence in its place, the length exact, the rest intact (the last page
    then counts back from its granule position, not forward across the hole)."""
    pages = ogg_pages(files["stereo"].read_bytes())
    k = len(pages) // 2 if where == "middle" else len(pages) - 2
    path = tmp_path / "hole.ogg"
    path.write_bytes(b"".join(bytes(p) for i, p in enumerate(pages) if i != k))
    got = _intact_around_page(files["stereo"], path, pages, k, monkeypatch)
    lost = struct.unpack("<q", pages[k][6:14])[0]
    assert not got[lost - 64 : lost].any()  # the end of the lost page: silence


def test_granule_jump_is_not_believed(files, tmp_path, monkeypatch):
    """A middle page whose granule position leaps 2**40 frames ahead with nothing missing
    before it: placed after the packet before (as libvorbis decodes), so the audio is the
    same; and a last page that claims 2**40 frames streams what the file holds, not a
    near-endless run of silence."""
    pages = ogg_pages(files["stereo"].read_bytes())
    k = len(pages) // 2
    mid = [bytearray(p) for p in pages]
    mid[k][6:14] = struct.pack("<q", struct.unpack("<q", mid[k][6:14])[0] + 2**40)
    path = tmp_path / "jump.ogg"
    path.write_bytes(b"".join(with_crc(p) for p in mid))
    full = _load(files["stereo"], monkeypatch)
    np.testing.assert_array_equal(_load(path, monkeypatch), full)
    last = [bytearray(p) for p in pages]
    last[-1][6:14] = struct.pack("<q", 2**40)
    path = tmp_path / "claims.ogg"
    path.write_bytes(b"".join(with_crc(p) for p in last))
    assert aio.info(path).frames == 2**40
    got = np.concatenate([np.asarray(c) for c, _ in aio.stream(path, chunk_frames=1 << 16)])
    assert got.shape[0] < full.shape[0] + 8192
    np.testing.assert_array_equal(got[: full.shape[0] - 4096], full[: full.shape[0] - 4096])
