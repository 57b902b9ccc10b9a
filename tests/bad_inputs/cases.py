"""The bad inputs: corrupt and lying files of every format, extreme parameters, failing writes,
threads on one path, kills mid-save. Each case is a function run by a worker process
(runner.py); it returns normally when the input was handled (audio, or a refusal that was
checked), raises `Wrong` for a wrong answer or lost data, and lets the library's own error
through for the runner to judge (the right kind, naming the file or the argument)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np

SR = 44100


class Wrong(Exception):
    """A silent wrong answer or lost data."""


@dataclass(frozen=True)
class Case:
    category: str
    name: str
    func: str  # a function of this module: func(ctx, *args)
    args: tuple = ()
    needle: str | None = None  # what an error message must name (a regex: file, argument)


@dataclass
class Context:
    media: Path  # the reference files, made once by make_media()
    work: Path  # a fresh folder for this case


def _x(frames=SR // 2, channels=2, seed=0):
    t = np.arange(frames) / SR
    x = np.stack([0.4 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], 1)
    x += np.random.default_rng(seed).uniform(-0.01, 0.01, x.shape)
    return x.astype(np.float32)


#: name -> (file, save() arguments or an ffmpeg codec)
FORMATS = {
    "wav_f32": ("a.wav", {}),
    "wav_p16": ("b.wav", {"encoding": "pcm16"}),
    "wav_p24": ("c.wav", {"encoding": "pcm24"}),
    "wav_ulaw": ("u.wav", {"encoding": "ulaw"}),
    "wav_alaw": ("al.wav", {"encoding": "alaw"}),
    "w64": ("a.w64", {}),
    "flac": ("a.flac", {}),
    "mp3": ("a.mp3", {}),
    "m4a_aac": ("a.m4a", {}),
    "m4a_alac": ("b.m4a", {"encoding": "alac"}),
    "ogg_vorbis": ("a.ogg", {}),
    "opus": ("a.opus", {}),
    "aiff": ("a.aiff", {}),
    "caf": ("a.caf", {}),
    "rf64": ("rf.wav", "ffmpeg:-c:a pcm_s16le -rf64 always"),
    "mp3_notag": ("n.mp3", "ffmpeg:-c:a libmp3lame -write_xing 0"),
    "adpcm": ("ad.wav", "ffmpeg:-c:a adpcm_ms"),
}


def make_media(folder: Path) -> None:
    """The reference files every file case starts from (1.5 s of stereo)."""
    x = _x(int(1.5 * SR))
    aio.save(folder / "src.wav", x, SR)
    for name, spec in FORMATS.values():
        if isinstance(spec, dict):
            aio.save(folder / name, x, 48000 if name.endswith(".opus") else SR, **spec)
        else:
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-i", str(folder / "src.wav")]
                + spec.split(":", 1)[1].split()
                + [str(folder / name)],
                check=True,
            )


# --- corrupt and lying files ----------------------------------------------------------------


def _readers(path: Path) -> None:
    """Every reader on one file. When info and load both succeed they must agree."""
    meta = None
    try:
        meta = aio.info(path)
    except aio.AudioIOError as e:
        _names(e, path)
    try:
        y, sr = aio.load(path)
    except aio.AudioIOError as e:
        _names(e, path)
        y = None
    if meta is not None and y is not None and meta.frames != y.shape[0]:
        raise Wrong(f"info().frames {meta.frames} != len(load()) {y.shape[0]}")
    for call in (
        lambda: aio.load(path, offset=0.25, duration=0.5, sr=16000, mono=True),
        lambda: [c for c, _ in aio.stream(path, chunk_frames=3000)],
        lambda: aio.batch_load([path, path], num_workers=2),
    ):
        try:
            call()
        except aio.AudioIOError as e:
            _names(e, path)


def _names(e: Exception, path: Path) -> None:
    if str(path) not in str(e):
        raise Wrong(f"the error does not name the file: {e}")


def truncated(ctx: Context, fmt: str, fraction: float) -> None:
    data = (ctx.media / FORMATS[fmt][0]).read_bytes()
    p = ctx.work / f"t{Path(FORMATS[fmt][0]).suffix}"
    p.write_bytes(data[: int(len(data) * fraction)])
    _readers(p)


def corrupted(ctx: Context, fmt: str, seed: int) -> None:
    data = bytearray((ctx.media / FORMATS[fmt][0]).read_bytes())
    rng = np.random.default_rng(seed)
    for _ in range(1 + seed % 4):
        n = int(rng.integers(1, 64))
        at = int(rng.integers(0, max(1, min(len(data) - n, 4000 if seed % 2 else len(data) - n))))
        data[at : at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    p = ctx.work / f"c{Path(FORMATS[fmt][0]).suffix}"
    p.write_bytes(bytes(data))
    _readers(p)


def random_bytes(ctx: Context, ext: str, size: int) -> None:
    p = ctx.work / f"r{ext}"
    p.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
    _readers(p)


def _wav(channels=2, rate=SR, block=None, bits=16, tag=1, data=None, frames=100, riff=b"RIFF"):
    block = channels * bits // 8 if block is None else block
    fmt = tag.to_bytes(2, "little") + (channels % 65536).to_bytes(2, "little")
    fmt += (rate % 2**32).to_bytes(4, "little") + ((rate * block) % 2**32).to_bytes(4, "little")
    fmt += (block % 65536).to_bytes(2, "little") + bits.to_bytes(2, "little")
    payload = bytes(frames * max(block, 1) % 10**6)
    size = len(payload) if data is None else data
    body = b"WAVE" + b"fmt " + (16).to_bytes(4, "little") + fmt
    body += b"data" + (size % 2**32).to_bytes(4, "little") + payload
    return riff + (len(body) % 2**32).to_bytes(4, "little") + body


WAV_LIES = {
    "channels_0": dict(channels=0, block=4),
    "channels_65535": dict(channels=65535),
    "rate_0": dict(rate=0),
    "rate_4e9": dict(rate=4_000_000_000),
    "block_0": dict(block=0),
    "block_odd": dict(block=3),
    "bits_0": dict(bits=0),
    "bits_64_pcm": dict(bits=64),
    "float_bits_16": dict(tag=3, bits=16),
    "data_4gib": dict(data=2**32 - 2),
    "data_0": dict(data=0),
    "unknown_tag": dict(tag=0x1234),
    "rf64_no_ds64": dict(riff=b"RF64", data=0xFFFFFFFF),
}


def lying_wav(ctx: Context, lie: str) -> None:
    p = ctx.work / "lie.wav"
    p.write_bytes(_wav(**WAV_LIES[lie]))
    _readers(p)


def rf64_ds64(ctx: Context, size: int) -> None:
    fmt = bytes.fromhex("01000100401f0000803e000002001000")
    ds64 = (0).to_bytes(8, "little") + size.to_bytes(8, "little") + bytes(12)
    body = b"WAVE" + b"ds64" + len(ds64).to_bytes(4, "little") + ds64
    body += b"fmt " + (16).to_bytes(4, "little") + fmt + b"data" + b"\xff" * 4 + bytes(200)
    p = ctx.work / "rf.wav"
    p.write_bytes(b"RF64" + b"\xff" * 4 + body)
    _readers(p)
    if aio.info(p).frames != 100:
        raise Wrong(f"RF64 with a {size}-byte ds64 size: {aio.info(p).frames} frames, not 100")


def mp3_lying_tag(ctx: Context, cut: int) -> None:
    """An MP3 whose LAME tag counts more frames than the file has."""
    data = (ctx.media / "a.mp3").read_bytes()
    p = ctx.work / "l.mp3"
    p.write_bytes(data[:cut])
    _readers(p)


# --- names that are not plain files ------------------------------------------------------------


def special_path(ctx: Context, kind: str) -> None:
    os.chdir(ctx.work)
    aio.save("p.flac", _x(1000), SR)
    if kind == "fifo":
        os.mkfifo("f.wav")
        aio.load("f.wav")
    elif kind == "directory":
        aio.load(str(ctx.work))
    elif kind == "file_url":
        if aio.info("file:p.flac").frames != 1000:  # no file of that name: must not alias
            raise Wrong("file:p.flac opened p.flac")
    elif kind == "pipe_read":
        aio.load("pipe:0")
    elif kind == "pipe_write":
        aio.save("pipe:1.flac", _x(100), SR)
        if not os.path.isfile("pipe:1.flac"):
            raise Wrong("pipe:1.flac was not written as a file")
    elif kind == "nul":
        aio.save("n.wav\0.flac", _x(100), SR)
    elif kind == "empty_file":
        Path("e.wav").write_bytes(b"")
        aio.load("e.wav")
    elif kind == "dev_zero":
        aio.load("/dev/zero")
    elif kind == "non_utf8":
        name = os.fsdecode(b"\xff\xfe.flac")
        aio.save(name, _x(700), SR)
        if aio.load(name)[0].shape[0] != 700:
            raise Wrong("non-UTF-8 name")
    elif kind == "missing":
        aio.load("no/such/file.wav")
    elif kind == "bad_type":
        aio.load(12345)


# --- extreme parameters --------------------------------------------------------------------

LOAD_PARAMS = [
    ("offset", 1e300),
    ("offset", -1.0),
    ("offset", float("nan")),
    ("offset", float("inf")),
    ("duration", 1e300),
    ("duration", 0.0),
    ("duration", -2.0),
    ("duration", float("nan")),
    ("sr", 0),
    ("sr", -16000),
    ("sr", 2**31),
    ("sr", 2**31 - 1),
    ("sr", 1),
    ("sr", 16000.5),
    ("sr", "16k"),
    ("sr", float("inf")),
    ("mono", "yes"),
    ("mono_mode", "loud"),
    ("dtype", "int16"),
    ("dtype", "bfloat16"),
    ("layout", "frames_first"),
    ("resample_quality", "ultra"),
]


def load_param(ctx: Context, name: str, value) -> None:
    y, _ = aio.load(ctx.media / "b.wav", **{name: value})
    if name == "offset" and y.shape[0] != 0:
        raise Wrong(f"offset={value!r} gave {y.shape[0]} frames")


STREAM_PARAMS = [
    ("chunk_frames", 0),
    ("chunk_frames", -5),
    ("chunk_frames", 1.5),
    ("chunk_frames", 10**12),
    ("chunk_frames", 10**30),
    ("chunk_duration", 1e-9),
    ("chunk_duration", 1e300),
    ("chunk_duration", float("nan")),
]


def stream_param(ctx: Context, name: str, value) -> None:
    for fmt in ("b.wav", "a.ogg"):  # a known and an unknown length
        got = sum(c.shape[0] for c, _ in aio.stream(ctx.media / fmt, **{name: value}))
        if got != aio.info(ctx.media / fmt).frames:
            raise Wrong(f"stream({name}={value!r}) gave {got} frames")


SAVE_PARAMS = [
    (".wav", {"sr": 2**31 - 1}),
    (".wav", {"sr": 2**40}),
    (".wav", {"sr": 0}),
    (".wav", {"sr": 44100.0}),
    (".wav", {"sr": 44100.5}),
    (".wav", {"encoding": "pcm12"}),
    (".flac", {"encoding": "ulaw"}),
    (".mp3", {"bitrate": "abc"}),
    (".mp3", {"bitrate": -1}),
    (".mp3", {"bitrate": 10**12}),
    (".mp3", {"bitrate": 128.0}),
    (".mp3", {"bitrate": "192k", "sr": 22050}),
    (".mp3", {"sr": 96000}),
    (".m4a", {"sr": 12345}),
    (".ogg", {"bitrate": "1k"}),
    (".opus", {"sr": 44100}),
    (".flac", {"flac_compression": 13}),
    (".flac", {"flac_compression": "max"}),
    (".wav", {"layout": "diagonal"}),
    (".xyz", {}),
    ("", {}),
]


def save_param(ctx: Context, ext: str, kw: dict) -> None:
    kw = dict(kw)
    sr = kw.pop("sr", SR)
    p = ctx.work / f"o{ext}"
    aio.save(p, _x(2000), sr, **kw)
    got = aio.info(p).frames
    want = 2000 if not ext == ".opus" else round(2000 * 48000 / sr)
    if abs(got - want) > 1:
        raise Wrong(f"saved {want} frames, read back {got}")


ARRAYS = {
    "nan": lambda: np.where(np.arange(2000)[:, None] == 700, np.nan, _x(2000)),
    "inf": lambda: np.where(np.arange(2000)[:, None] == 700, np.inf, _x(2000)),
    "empty": lambda: np.zeros((0, 2), np.float32),
    "one_frame": lambda: np.zeros((1, 2), np.float32),
    "bfloat16": lambda: mx.array(_x(2000)).astype(mx.bfloat16),
    "float64": lambda: _x(2000).astype(np.float64),
    "int16": lambda: (_x(2000) * 32767).astype(np.int16),
    "3d": lambda: np.zeros((2, 2, 100), np.float32),
    "reversed_np": lambda: _x(2000)[::-1],
    "reversed_mx": lambda: mx.array(_x(2000))[::-1],
    "strided": lambda: _x(4000)[::2],
    "loud": lambda: _x(2000) * 1e30,
    "list": lambda: [[0.0, 0.0]] * 10,
}


def save_array(ctx: Context, ext: str, kind: str, clip: bool) -> None:
    x = ARRAYS[kind]()
    p = ctx.work / f"o{ext}"
    aio.save(p, x, 48000, clip=clip)
    frames = np.shape(x)[0]
    got = aio.load(p)[0]
    if abs(got.shape[0] - frames) > 1:
        raise Wrong(f"saved {frames} frames, read back {got.shape[0]}")
    if not np.isfinite(np.asarray(got)).all() and (clip or ext not in (".wav", ".caf", ".aiff")):
        raise Wrong("non-finite samples came back from an encoder that cannot hold them")


def writer_array(ctx: Context, ext: str, kind: str) -> None:
    x = ARRAYS[kind]()
    with aio.AudioWriter(ctx.work / f"w{ext}", 48000, 2, clip=False) as w:
        w.write(np.zeros((100, 2), np.float32))
        w.write(x)


RESAMPLE = [(1, 2**31 - 1), (2**31 - 1, 1), (44100, 0), (0, 44100), (3, 7), (44100, 44100)]


def resample_ratio(ctx: Context, a, b) -> None:
    y = aio.resample(_x(1000), a, b)
    want = -(-1000 * b // a)
    if y.shape[0] != want:
        raise Wrong(f"resample {a}->{b}: {y.shape[0]} frames, not {want}")


def channels(ctx: Context, ext: str, n: int) -> None:
    p = ctx.work / f"ch{ext}"
    aio.save(p, np.zeros((n, 4), np.float32), 8000, layout="channels_first")
    if aio.info(p).channels != n:
        raise Wrong(f"{n} channels written, {aio.info(p).channels} read")


def writer_channels(ctx: Context, ext: str, n: int, rate: int) -> None:
    p = ctx.work / f"w{ext}"
    aio.save(p, _x(100), SR)
    before = p.read_bytes()
    try:
        with aio.AudioWriter(p, rate, n) as w:
            w.write(np.zeros((10, n), np.float32))
    except aio.AudioIOError:
        if p.read_bytes() != before:
            raise Wrong("a refused AudioWriter changed the existing file") from None
        raise


# --- failing writes --------------------------------------------------------------------------


def full_disk(ctx: Context, ext: str, limit: int) -> None:
    """A save that hits RLIMIT_FSIZE: an error, and the old file as it was."""
    p = ctx.work / f"f{ext}"
    aio.save(p, _x(1000), 48000)
    before = p.read_bytes()
    r = _child(
        f"""
        import resource, numpy as np, mlx_audio_io as aio
        x = np.random.default_rng(0).uniform(-.5, .5, (48000 * 30, 2)).astype(np.float32)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        try:
            aio.save({str(p)!r}, x, 48000)
        except aio.AudioIOError as e:
            print("refused" if {str(p)!r} in str(e) else "unnamed")
        """
    )
    if r.returncode != 0 or "refused" not in r.stdout:
        raise Wrong(f"rc {r.returncode}, {r.stdout!r} {r.stderr[-300:]!r}")
    if p.read_bytes() != before:
        raise Wrong("the old file changed")
    if len(list(ctx.work.iterdir())) != 1:
        raise Wrong(f"left behind: {sorted(q.name for q in ctx.work.iterdir())}")


def writer_full_disk(ctx: Context, ext: str) -> None:
    p = ctx.work / f"w{ext}"
    r = _child(
        f"""
        import resource, numpy as np, mlx_audio_io as aio
        x = np.random.default_rng(0).uniform(-.5, .5, (48000, 2)).astype(np.float32)
        w = aio.AudioWriter({str(p)!r}, 48000, 2)
        w.write(x)
        resource.setrlimit(resource.RLIMIT_FSIZE, (500_000, 500_000))
        try:
            for _ in range(100):
                w.write(x)
        except aio.AudioIOError as e:
            print("refused")
        w.close()
        """
    )
    if "refused" not in r.stdout:
        raise Wrong(f"rc {r.returncode}, {r.stderr[-300:]!r}")
    if aio.load(p)[0].shape[0] < 48000 * 0.9:
        raise Wrong("the frames written before the failure are gone")


def write_target(ctx: Context, kind: str) -> None:
    if kind == "dev_full":
        aio.save("/dev/full", _x(100000), SR, format="wav")
    elif kind == "dev_null":
        aio.save("/dev/null", _x(1000), SR, format="flac")
        if not Path("/dev/null").is_char_device():
            raise Wrong("/dev/null is gone")
    elif kind == "directory":
        aio.save(ctx.work, _x(100), SR, format="wav")
    elif kind == "missing_dir":
        aio.save(ctx.work / "no" / "x.wav", _x(100), SR)
    elif kind == "symlink":
        (ctx.work / "real.wav").write_bytes(b"old")
        (ctx.work / "link.wav").symlink_to("real.wav")
        aio.save(ctx.work / "link.wav", _x(100), SR)
        if (
            not (ctx.work / "link.wav").is_symlink()
            or aio.info(ctx.work / "real.wav").frames != 100
        ):
            raise Wrong("the link or its target")
    elif kind == "dangling_symlink":
        (ctx.work / "link.wav").symlink_to("nowhere.wav")
        aio.save(ctx.work / "link.wav", _x(100), SR)
        if aio.info(ctx.work / "nowhere.wav").frames != 100:
            raise Wrong("dangling link target")
    elif kind == "file_object_fails":

        class Broken:
            name = "broken.wav"

            def write(self, b):
                raise OSError(28, "No space left on device")

        aio.save(Broken(), _x(100), SR)
    elif kind == "empty_write_over_mp3":
        p = ctx.work / "x.mp3"
        aio.save(p, _x(4800), 48000)
        before = p.read_bytes()
        w = aio.AudioWriter(p, 48000, 2)
        w.write(np.zeros((0, 2), np.float32))
        try:
            w.close()
            refused = None
        except aio.AudioIOError as e:  # expected: an MP3 cannot hold zero frames
            refused = e
        if p.read_bytes() != before:
            raise Wrong("an empty write replaced the old MP3")
        if refused is not None:
            raise refused
    elif kind == "long_non_ascii_name":
        aio.save(ctx.work / ("é" * 120 + ".flac"), _x(100), SR)
    elif kind == "read_only_target":
        p = ctx.work / "ro.wav"
        aio.save(p, _x(100), SR)
        os.chmod(p, 0o444)
        aio.save(p, _x(300), SR)  # root may; others get Permission denied
        if os.geteuid() == 0 and p.stat().st_mode & 0o777 != 0o444:
            raise Wrong("the mode changed")
    elif kind == "short_mp3s":  # lengths just past a frame boundary (libav's tag undercounts)
        for n in (1, 20, 47, 1153, 1190, 2305):
            aio.save(ctx.work / "s.mp3", _x(n), SR)
            if aio.load(ctx.work / "s.mp3")[0].shape[0] != n:
                raise Wrong(
                    f"{n} samples saved as MP3 load as {aio.load(ctx.work / 's.mp3')[0].shape[0]}"
                )


# --- threads on one path, kills mid-save ------------------------------------------------------


def threads_one_path(ctx: Context, ext: str) -> None:
    p = ctx.work / f"t{ext}"
    lengths = [4800 * (k + 1) for k in range(6)]
    errors, seen = [], []

    def save(n):
        try:
            for _ in range(3):
                aio.save(p, _x(n, seed=n), 48000)
        except Exception as e:  # reported below
            errors.append(e)

    def read():
        for _ in range(20):
            try:
                seen.append(aio.load(p)[0].shape[0])
            except aio.AudioFileNotFoundError:
                pass  # not written yet
            except Exception as e:  # a torn file
                errors.append(e)

    threads = [threading.Thread(target=save, args=(n,)) for n in lengths]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise Wrong(f"{errors[0]!r}")
    if aio.info(p).frames not in lengths or any(s not in lengths for s in seen):
        raise Wrong(f"a torn file: {aio.info(p).frames}, {seen}")


def killed_save(ctx: Context, ext: str, delay: float) -> None:
    p = ctx.work / f"k{ext}"
    aio.save(p, _x(1000), 48000)
    code = f"""
        import numpy as np, mlx_audio_io as aio
        x = np.random.default_rng(0).uniform(-.5, .5, (48000 * 30, 2)).astype(np.float32)
        print("go", flush=True)
        while True:
            aio.save({str(p)!r}, x, 48000)
        """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True
    )
    child.stdout.readline()
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    frames = aio.info(p).frames
    if frames not in (1000, 48000 * 30) or aio.load(p)[0].shape[0] != frames:
        raise Wrong(f"after a kill the file holds {frames} frames")


def batch_interrupt(ctx: Context, delay: float) -> None:
    code = """
        import numpy as np, mlx_audio_io as aio
        aio.save("long.flac", np.zeros(((1 << 20) + 99, 2), np.float32) + .1, 44100)
        print("go", flush=True)
        try:  # until the Ctrl-C: loads got fast enough to finish first, and a SIGINT during
            while True:  # interpreter shutdown kills with -2 instead of raising here
                aio.batch_load(["long.flac"] * 30, num_workers=4)
        except KeyboardInterrupt:
            pass
        """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ctx.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child.stdout.readline()
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    if child.returncode not in (0, 1):
        raise Wrong(f"Ctrl-C in batch_load: exit {child.returncode} {err[-300:]!r}")


# --- streaming ---------------------------------------------------------------------------------

RING = [
    ("capacity", -1),
    ("capacity", 0),
    ("capacity", 1.5),
    ("capacity", 10**30),
    ("channels", 0),
    ("channels", "2"),
    ("read", -5),
    ("read", 10**12),
    ("read", 2.5),
    ("write", "3d"),
    ("write", "wrong_channels"),
    ("write", "complex"),
    ("write", "too_much"),
]


def ring_buffer(ctx: Context, what: str, value) -> None:
    from mlx_audio_streaming import AudioRingBuffer

    kw = {"capacity": 100, "channels": 2}
    if what in kw:
        kw[what] = value
    ring = AudioRingBuffer(**kw)
    ring.write(np.zeros((2, 60), np.float32))
    if what == "read":
        got = ring.read(value)
        if got.shape[-1] > 60 or ring.available != 60 - got.shape[-1]:
            raise Wrong(f"read({value!r}) gave {got.shape}, available {ring.available}")
    elif what == "write":
        data = {
            "3d": np.zeros((1, 2, 5), np.float32),
            "wrong_channels": np.zeros((3, 5), np.float32),
            "complex": np.zeros((2, 5), np.complex64),
            "too_much": np.zeros((2, 500), np.float32),
        }[value]
        ring.write(data)
        if ring.available > 100:
            raise Wrong(f"available {ring.available} > capacity")


def sink_rates(ctx: Context, ext: str) -> None:
    """Chunks at two rates into one FileSink: refused, the file keeps the first rate's."""
    from mlx_audio_streaming import FileSink, StreamChunk

    p = ctx.work / f"s{ext}"
    sink = FileSink(p)
    sink.write(StreamChunk(mx.array(_x(4800).T), 48000, 2))
    try:
        sink.write(StreamChunk(mx.array(_x(1600).T), 16000, 2))
    finally:
        sink.close()
        if aio.info(p).sample_rate != 48000:
            raise Wrong("the file's rate changed")


def stuck_pipeline(ctx: Context, where: str) -> None:
    """A source or sink that blocks: stop() must return (naming it) and Python exit cleanly."""
    r = _child(
        f"""
        import threading, numpy as np, mlx_audio_streaming as ms
        block = threading.Event()
        def gen():
            while True:
                if {where!r} == "source":
                    block.wait()
                yield np.zeros((2, 512), np.float32)
        sink = ms.CallbackSink(lambda *a: block.wait() if {where!r} == "sink" else None)
        p = ms.StreamingPipeline(ms.CallbackSource(gen, 16000, 2), sink=sink)
        p.start()
        import time; time.sleep(0.3)
        try:
            p.stop(timeout=0.5)
        except ms.PipelineTimeoutError as e:
            print("timed out:", e.stage)
        """
    )
    if r.returncode != 0 or f"timed out: {where}" not in r.stdout:
        raise Wrong(f"exit {r.returncode}: {r.stdout!r} {r.stderr[-300:]!r}")


def exit_running(ctx: Context, ext: str) -> None:
    """Interpreter exit while a pipeline writes a file: a clean exit and a readable file."""
    p = ctx.work / f"e{ext}"
    r = _child(
        f"""
        import numpy as np, mlx_audio_streaming as ms
        def gen():
            while True:
                yield np.random.default_rng(0).uniform(-.1, .1, (2, 4800)).astype(np.float32)
        ms.StreamingPipeline(ms.CallbackSource(gen, 48000, 2), sink=ms.FileSink({str(p)!r})).start()
        import time; time.sleep(0.5)
        """
    )
    if r.returncode != 0:
        raise Wrong(f"exit {r.returncode}: {r.stderr[-300:]!r}")
    aio.load(p)


# --- fast-mp3-augment ---------------------------------------------------------------------------

FMA_PARAMS = [
    ("sample_rate", 16000.0),
    ("sample_rate", 16000.5),
    ("sample_rate", 2**31),
    ("sample_rate", -44100),
    ("sample_rate", float("nan")),
    ("sample_rate", "16000"),
    ("sample_rate", None),
    ("bitrate_kbps", 128.0),
    ("bitrate_kbps", 7),
    ("bitrate_kbps", 10**12),
    ("bitrate_kbps", float("inf")),
    ("quality", 9.0),
    ("quality", 10),
    ("quality", -1),
    ("preserve_delay", "no"),
]

FMA_ARRAYS = {
    "nan": lambda: np.where(np.arange(4800) == 70, np.nan, 0.1).astype(np.float32),
    "inf": lambda: np.where(np.arange(4800) == 70, np.inf, 0.1).astype(np.float32),
    "empty": lambda: np.zeros(0, np.float32),
    "too_short": lambda: np.zeros(100, np.float32),
    "three_channels": lambda: np.zeros((3, 4800), np.float32),
    "channels_last": lambda: np.zeros((4800, 2), np.float32),
    "3d": lambda: np.zeros((1, 2, 4800), np.float32),
    "int16": lambda: np.zeros(4800, np.int16),
    "bfloat16": lambda: mx.array(_x(4800).T).astype(mx.bfloat16),
    "reversed_mx": lambda: mx.array(_x(4800).T)[:, ::-1],
    "reversed_1d": lambda: _x(4800)[::-1, 0],
    "huge_values": lambda: np.full(4800, 3e38, np.float32),
    "float64_overflow": lambda: np.full(4800, 1e300),
}


def fma_param(ctx: Context, name: str, value) -> None:
    import fast_mp3_augment as fma

    kw = {"sample_rate": 48000, "bitrate_kbps": 64, "quality": 7, "preserve_delay": False}
    kw[name] = value
    y = fma.compress_roundtrip(_x(4800, 1)[:, 0], **kw)
    if not kw["preserve_delay"] and y.shape != (4800,):
        raise Wrong(f"shape {y.shape}")


def fma_array(ctx: Context, kind: str) -> None:
    import fast_mp3_augment as fma

    x = FMA_ARRAYS[kind]()
    y = fma.compress_roundtrip(x, 48000, 64)
    if (
        tuple(y.shape) != tuple(x.shape)
        or not np.isfinite(np.asarray(y.astype(mx.float32) if isinstance(y, mx.array) else y)).all()
    ):
        raise Wrong(f"{kind}: shape {tuple(y.shape)} for {tuple(x.shape)}, or non-finite output")


# --- model files ---------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
KOKORO_FIELDS = ["dim_in", "dropout", "hidden_dim", "max_dur", "multispeaker", "n_layer"]
KOKORO_FIELDS += ["n_mels", "n_token", "style_dim", "text_encoder_kernel_size", "plbert", "vocab"]
KOKORO_FIELDS += ["istftnet", "plbert.hidden_size", "plbert.num_attention_heads"]
KOKORO_FIELDS += ["plbert.num_hidden_layers", "istftnet.upsample_rates", "istftnet.gen_istft_n_fft"]
KOKORO_FIELDS += ["istftnet.resblock_dilation_sizes", "istftnet.upsample_kernel_sizes"]
KOKORO_VALUES = ["x", -1, 10**12, None, [], True, 1.5, float("nan"), {"a": 1}]


def kokoro_config(ctx: Context, field: str, value) -> None:
    """The reduced Kokoro folder with one config field set to a wrong type or range."""
    import json
    import shutil

    from mlx_audio_tts.utils import load_model

    folder = ctx.work / "m"
    folder.mkdir()
    shutil.copy(FIXTURES / "kokoro" / "kokoro_reduced.pth", folder / "kokoro-v1_0.pth")
    cfg = json.loads((FIXTURES / "kokoro" / "kokoro_reduced_config.json").read_text())
    *parents, key = field.split(".")
    node = cfg
    for name in parents:
        node = node[name]
    node[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    load_model(folder)


def kokoro_config_bytes(ctx: Context, kind: str) -> None:
    import shutil

    from mlx_audio_tts.utils import load_model

    folder = ctx.work / "m"
    folder.mkdir()
    shutil.copy(FIXTURES / "kokoro" / "kokoro_reduced.pth", folder / "kokoro-v1_0.pth")
    data = (FIXTURES / "kokoro" / "kokoro_reduced_config.json").read_bytes()
    data = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "not_utf8": b'{"n_layer": "\xff\xfe"}'.replace(b"\\x", b"\\x"),
        "latin1": data.replace(b'"n_layer"', b'"n_l\xe4yer"'),
        "list": b"[1, 2, 3]",
        "deep": b"[" * 200_000 + b"]" * 200_000,
        "huge_number": data.replace(b'"n_layer": 2', b'"n_layer": 1' + b"0" * 5000),
    }[kind]
    (folder / "config.json").write_bytes(data)
    load_model(folder)


def torch_file(ctx: Context, name: str, how: str, at: float) -> None:
    """A checkpoint fixture cut short or with corrupt bytes, through the restricted loader."""
    from mlx_audio_io.torchfile import load_torch_file

    data = bytearray((FIXTURES / name).read_bytes())
    if how == "cut":
        data = data[: int(len(data) * at)]
    else:
        rng = np.random.default_rng(int(at * 1000))
        for _ in range(4):
            i = int(rng.integers(0, len(data) - 16))
            data[i : i + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    p = ctx.work / Path(name).name
    p.write_bytes(bytes(data))
    load_torch_file(p, globals_as_refs=True)


def demucs_file(ctx: Context, how: str, at: float) -> None:
    """HTDemucs' loader on a cut or corrupted demucs .th package."""
    from mlx_audio_sts.models.htdemucs.pretrained import load_local

    data = bytearray((FIXTURES / "torchfile" / "demucs.th").read_bytes())
    if how == "cut":
        data = data[: int(len(data) * at)]
    else:
        rng = np.random.default_rng(int(at * 1000))
        i = int(rng.integers(0, len(data) - 64))
        data[i : i + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    p = ctx.work / "demucs.th"
    p.write_bytes(bytes(data))
    load_local(p)


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


# --- the list ------------------------------------------------------------------------------------


def all_cases() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    for fmt in FORMATS:
        for frac in (0.0005, 0.01, 0.05, 0.3, 0.5, 0.9, 0.999):
            add(Case("corrupt and lying files", f"{fmt} cut at {frac}", "truncated", (fmt, frac)))
        for seed in range(10):
            add(Case("corrupt and lying files", f"{fmt} corrupt #{seed}", "corrupted", (fmt, seed)))
    for ext in (".wav", ".mp3", ".flac", ".m4a", ".ogg", ".opus", ".aiff", ".caf", ".w64", ""):
        for size in (1, 44, 4096, 50000):
            add(
                Case(
                    "corrupt and lying files", f"random{ext} {size} B", "random_bytes", (ext, size)
                )
            )
    for lie in WAV_LIES:
        add(Case("corrupt and lying files", f"wav header: {lie}", "lying_wav", (lie,)))
    for size in (2**63 - 8, 2**62, 2**32, 10**6):
        add(Case("corrupt and lying files", f"rf64 ds64 {size}", "rf64_ds64", (size,)))
    for cut in (500, 2000, 9000, 30000):
        add(Case("corrupt and lying files", f"mp3 tag, cut at {cut}", "mp3_lying_tag", (cut,)))
    for kind in (
        "fifo",
        "directory",
        "file_url",
        "pipe_read",
        "pipe_write",
        "nul",
        "empty_file",
        "dev_zero",
        "non_utf8",
        "missing",
        "bad_type",
    ):
        needle = {"nul": "NUL", "bad_type": "path", "pipe_read": "pipe:0"}.get(kind)
        add(Case("paths", kind, "special_path", (kind,), needle))
    for name, value in LOAD_PARAMS:
        add(Case("extreme parameters", f"load {name}={value!r}", "load_param", (name, value), name))
    for name, value in STREAM_PARAMS:
        add(
            Case(
                "extreme parameters",
                f"stream {name}={value!r}",
                "stream_param",
                (name, value),
                name,
            )
        )
    for ext, kw in SAVE_PARAMS:
        add(Case("extreme parameters", f"save{ext} {kw}", "save_param", (ext, kw)))
    for ext in (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aiff", ".caf"):
        for kind in ARRAYS:
            for clip in (True, False):
                add(
                    Case(
                        "extreme parameters",
                        f"save{ext} {kind} clip={clip}",
                        "save_array",
                        (ext, kind, clip),
                    )
                )
        for kind in ("nan", "inf", "empty", "bfloat16", "reversed_mx", "3d"):
            add(Case("extreme parameters", f"AudioWriter{ext} {kind}", "writer_array", (ext, kind)))
    for a, b in RESAMPLE:
        add(Case("extreme parameters", f"resample {a}->{b}", "resample_ratio", (a, b), "sr"))
    for ext, n in ((".wav", 16383), (".wav", 16384), (".w64", 40000), (".flac", 9), (".caf", 300)):
        add(Case("extreme parameters", f"save{ext} {n} channels", "channels", (ext, n)))
    for ext, n, rate in (
        (".wav", 30000, 8000),
        (".wav", 2, 2**31 - 1),
        (".flac", 2, 2**31 - 1),
        (".mp3", 3, 44100),
    ):
        add(
            Case(
                "extreme parameters",
                f"AudioWriter{ext} {n} ch at {rate}",
                "writer_channels",
                (ext, n, rate),
            )
        )
    for ext in (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aiff", ".caf", ".w64"):
        for limit in (0, 100, 300_000):
            add(
                Case(
                    "failing writes", f"save{ext} disk full at {limit} B", "full_disk", (ext, limit)
                )
            )
    for ext in (".wav", ".flac", ".mp3", ".ogg"):
        add(Case("failing writes", f"AudioWriter{ext} disk full", "writer_full_disk", (ext,)))
    for kind in (
        "dev_full",
        "dev_null",
        "directory",
        "missing_dir",
        "symlink",
        "dangling_symlink",
        "file_object_fails",
        "short_mp3s",
        "empty_write_over_mp3",
        "long_non_ascii_name",
        "read_only_target",
    ):
        add(Case("failing writes", kind, "write_target", (kind,)))
    for ext in (".wav", ".flac", ".mp3", ".m4a", ".ogg"):
        add(Case("threads on one path", f"saves and loads{ext}", "threads_one_path", (ext,)))
    for ext, delay in ((".wav", 0.3), (".flac", 0.8), (".mp3", 0.5), (".m4a", 0.7), (".wav", 1.2)):
        add(Case("kills mid-save", f"SIGKILL{ext} after {delay} s", "killed_save", (ext, delay)))
    for delay in (0.5, 1.5):
        add(
            Case(
                "kills mid-save",
                f"Ctrl-C in batch_load after {delay} s",
                "batch_interrupt",
                (delay,),
            )
        )
    for what, value in RING:
        needle = {"read": "num_frames", "write": "audio"}.get(what, what)
        add(
            Case("streaming", f"ring buffer {what} {value!r}", "ring_buffer", (what, value), needle)
        )
    for ext in (".wav", ".flac", ".mp3"):
        add(Case("streaming", f"FileSink{ext} rate change", "sink_rates", (ext,), "Hz"))
        add(Case("streaming", f"exit while writing{ext}", "exit_running", (ext,)))
    for where in ("source", "sink"):
        add(Case("streaming", f"stuck {where}", "stuck_pipeline", (where,)))
    for name, value in FMA_PARAMS:
        add(Case("fast-mp3-augment", f"{name}={value!r}", "fma_param", (name, value)))
    loading = r"loading failed for|failed for '|load failed"
    for field in KOKORO_FIELDS:
        for value in KOKORO_VALUES:
            name = f"Kokoro config {field}={value!r}"
            add(Case("model files", name, "kokoro_config", (field, value), loading))
    for kind in ("empty", "truncated", "not_utf8", "latin1", "list", "deep", "huge_number"):
        add(
            Case(
                "model files", f"Kokoro config.json {kind}", "kokoro_config_bytes", (kind,), loading
            )
        )
    for name in ("torchfile/af_heart.pt", "torchfile/views.pt", "torchfile/legacy_views.pt",
                 "torchfile/demucs.th", "kokoro/kokoro_reduced.pth"):  # fmt: skip
        for how, at in (("cut", 0.01), ("cut", 0.3), ("cut", 0.7), ("cut", 0.99)):
            add(Case("model files", f"{name} {how} {at}", "torch_file", (name, how, at), loading))
        for seed in (0.1, 0.2, 0.3, 0.4):
            add(
                Case(
                    "model files",
                    f"{name} corrupt {seed}",
                    "torch_file",
                    (name, "corrupt", seed),
                    loading,
                )
            )
    for how, at in (
        ("cut", 0.05),
        ("cut", 0.5),
        ("cut", 0.95),
        ("corrupt", 0.1),
        ("corrupt", 0.2),
        ("corrupt", 0.3),
    ):
        add(Case("model files", f"HTDemucs .th {how} {at}", "demucs_file", (how, at), loading))
    for kind in FMA_ARRAYS:
        add(Case("fast-mp3-augment", f"audio: {kind}", "fma_array", (kind,), "samples|channels"))
    return cases
