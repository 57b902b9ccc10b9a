"""`mlx-audio-sts separate` with bad input: options checked before anything is separated, one
failing track does not stop the others, and the progress count never passes its total. The
model is the reduced HTDemucs fixture (8 kHz, random weights)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import mlx_audio_io as aio

import numpy as np
import pytest
from mlx_audio_sts import apply_model
from mlx_audio_sts.cli import main as cli
from mlx_audio_sts.models.htdemucs import convert
from signals import music

FIX = Path(__file__).parent.parent / "fixtures" / "parity"
separate_module = importlib.import_module("mlx_audio_sts.separate")  # the package's name is
# also that of the function it exports


@pytest.fixture(scope="module")
def model():
    return convert.load_th(FIX / "htdemucs_reduced.th")


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    return convert.save([("955717e8", model)], tmp_path_factory.mktemp("model") / "m")


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.wav"
    aio.save(path, music(6000, 8000, 2), 8000)
    return path


@pytest.fixture
def separations(monkeypatch):
    """Counts the tracks the CLI separates."""
    calls = []
    real = separate_module.separate

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(separate_module, "separate", counting)
    return calls


@pytest.mark.parametrize(
    "options, message",
    [
        (["--two-stems", "singing"], "--two-stems must be one of the model's sources "
                                     "(drums, bass, other, vocals), got 'singing'"),
        (["--mp3", "--mp3-bitrate", "-5"], "bitrate must be 'auto', a string like '192k', or "
                                           "bits per second, got '-5k'"),
        (["--filename", "{track}/{instrument}.{ext}"], "--filename must use only {track}"),
        (["--segment", "5"], "segment must be seconds in (0, 0.5], got 5.0"),
        (["--overlap", "1"], "overlap must be in [0, 1), got 1.0"),
        (["--shifts", "-1"], "shifts must be a whole number >= 0, got -1"),
    ],
)  # fmt: skip
def test_options_are_checked_before_anything_is_separated(
    options, message, folder, song, tmp_path, separations, capsys
):
    out = tmp_path / "sep"
    rc = cli(["separate", str(song), str(song), "--model-path", str(folder), "-o", str(out),
              "-q", *options])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and separations == [] and not out.exists()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_a_failing_track_does_not_stop_the_others(folder, song, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    second = tmp_path / "second.flac"
    aio.save(second, music(5000, 8000, 2), 8000)
    missing = tmp_path / "missing.wav"
    out = tmp_path / "sep"
    rc = cli(["separate", str(song), str(missing), str(corrupt), str(second), "--model-path",
              str(folder), "-o", str(out), "--shifts", "0", "--two-stems", "vocals"])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 1
    for name in ("song", "second"):  # the tracks after the failures were separated too
        got = sorted(p.name for p in (out / "htdemucs" / name).iterdir())
        assert got == ["no_vocals.wav", "vocals.wav"]
    assert not (out / "htdemucs" / "corrupt").exists()
    assert len(captured.out.splitlines()) == 4  # the paths written
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert errors[0] == f"error: file not found: '{missing}'"  # reported before any work
    assert f"'{corrupt}'" in errors[1] and "Traceback" not in captured.err
    assert errors[-1] == f"error: 2 of 4 track(s) failed: '{missing}', '{corrupt}'"
    # the progress bar of a track that failed is ended, so the error starts its own line
    assert all(line.startswith("error:") for line in errors)


def test_the_mp3_bitrate_is_settled_before_the_separation(folder, song, tmp_path, capsys):
    # 320k (the default) cannot be coded at the model's 8 kHz: mlx-audio-io takes the nearest
    # rate MP3 carries there, and says so before the separation, not after it
    out = tmp_path / "sep"
    assert cli(["separate", str(song), "--model-path", str(folder), "-o", str(out), "--mp3",
                "--shifts", "0"]) == 0  # fmt: skip
    err = capsys.readouterr().err.split("\n")
    assert err[0].startswith("warning: --mp3-bitrate 320: bitrate='320k' cannot be coded as "
                             "MP3 at 8000 Hz; using 64k")  # fmt: skip
    assert "windows" in err[1]
    assert aio.info(out / "htdemucs" / "song" / "vocals.mp3").sample_rate == 8000


def _counts(progress_text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"(\d+)/(\d+) windows", progress_text)]


@pytest.mark.parametrize("seed", range(6))
def test_progress_never_passes_its_total(model, seed):
    # with shifts each pass is longer than the track by a random offset of up to 0.5 s, so
    # the number of windows is known only as each pass starts
    mix = music(9000, 8000, 2).T[None]
    calls = []
    apply_model(model, mix, shifts=2, seed=seed, progress=lambda d, t: calls.append((d, t)))
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1))
    assert all(d <= t for d, t in calls) and calls[-1][1] == len(calls)
    totals = [t for _, t in calls]
    assert totals == sorted(totals, reverse=True)  # it may shrink, never grow


def test_cli_progress_bar_ends_at_its_total(folder, song, tmp_path, capsys):
    rc = cli(["separate", str(song), "--model-path", str(folder), "-o", str(tmp_path / "o"),
              "--shifts", "2", "--seed", "1"])  # fmt: skip
    err = capsys.readouterr().err
    counts = _counts(err)
    assert rc == 0 and counts and all(d <= t for d, t in counts)
    assert counts[-1][0] == counts[-1][1] and err.endswith("\n")
    assert np.isfinite(np.asarray(aio.load(tmp_path / "o/htdemucs/song/vocals.wav")[0])).all()
