"""MicrophoneSource and SpeakerSink through the real sounddevice/PortAudio/ALSA stack: ALSA's
`file` plugin (DESIGN.md) stores what is played in a file and plays a file we wrote as the
microphone. Each test runs in a subprocess whose HOME holds that .asoundrc, because PortAudio
reads the ALSA configuration once, at import."""

import subprocess
import sys
import textwrap

import numpy as np

ASOUNDRC = """
pcm.!default {{
    type plug
    slave {{ pcm "tap"; format S16_LE; rate 44100; channels 2 }}
}}
pcm.tap {{
    type file
    slave.pcm "null"
    file "{played}"
    infile "{record}"
    format "raw"
}}
"""


def _run(tmp_path, code: str) -> None:
    (tmp_path / ".asoundrc").write_text(
        ASOUNDRC.format(played=tmp_path / "played.raw", record=tmp_path / "record.raw")
    )
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_speaker_sink_plays_the_stream(tmp_path):
    t = np.arange(44100) / 44100
    x = 0.4 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1)
    x = (np.round(x * 32767) / 32767).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    _run(
        tmp_path,
        """
        import numpy as np, mlx_audio_io as aio, mlx_audio_streaming as ms
        aio.save("in.wav", np.load("x.npy"), 44100)
        sink = ms.SpeakerSink()
        p = ms.StreamingPipeline(ms.FileSource("in.wav", chunk_size=1024), None, sink)
        p.start(); p.wait()
        print(sink.underruns)
    """,
    )
    played = np.fromfile(tmp_path / "played.raw", "<i2").reshape(-1, 2) / 32768
    assert len(played) >= len(x)  # everything played, from the first sample on
    np.testing.assert_allclose(played[: len(x)], x, atol=2 / 32768)


def test_microphone_source_records_the_input(tmp_path):
    rec = np.random.default_rng(0).integers(-9000, 9000, (3 * 44100, 2)).astype("<i2")
    rec.tofile(tmp_path / "record.raw")
    _run(
        tmp_path,
        """
        import mlx_audio_streaming as ms
        src = ms.MicrophoneSource(sample_rate=44100, channels=2, chunk_size=1024, duration=1.0)
        p = ms.StreamingPipeline(src, ms.GainProcessor(1.0), ms.FileSink("mic.wav"))
        p.start(); p.wait()
        open("dropped.txt", "w").write(str(src.dropped_chunks))
    """,
    )
    import mlx_audio_io as aio

    got = np.round(np.asarray(aio.load(tmp_path / "mic.wav")[0]) * 32768).astype(np.int64)
    assert got.shape == (44100, 2)
    np.testing.assert_array_equal(got[:1024], rec[:1024])  # it starts where the file does
    # ALSA's null device runs on its own clock and PortAudio's xrun recovery may skip or
    # repeat a period now and then (not always flagged), so a block may straddle a gap; the blocks
    # that arrive whole must be unaltered slices of the input, in order, and most must arrive
    # whole (noise makes each block's place in the input unique)
    src = rec.astype(np.int64)
    last, whole = -1, 0
    for k in range(0, 44100 - 1024, 1024):
        block = got[k : k + 1024]
        hits = np.flatnonzero((src[:-1024, 0] == block[0, 0]) & (src[:-1024, 1] == block[0, 1]))
        at = next((h for h in hits if np.array_equal(src[h : h + 1024], block)), None)
        if at is not None:
            assert at >= last
            last, whole = at, whole + 1
    assert whole >= 0.75 * (44100 // 1024)


def test_cli_play_routes_to_the_speaker(tmp_path):
    import mlx_audio_io as aio

    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(22050) / 44100)).astype(np.float32)
    aio.save(tmp_path / "in.wav", np.stack([x, -x], 1), 44100)
    cli = str(__import__("pathlib").Path(sys.executable).with_name("mlx-audio-stream"))
    _run(
        tmp_path,
        f"""
        import subprocess
        subprocess.run([{cli!r}, "in.wav", "out.wav", "--play", "--gain-db", "-6.0206",
                        "--quiet"], check=True)
    """,
    )
    played = np.fromfile(tmp_path / "played.raw", "<i2").reshape(-1, 2) / 32768
    np.testing.assert_allclose(played[:22050, 0], x / 2, atol=2 / 32768)
    np.testing.assert_allclose(played[:22050, 1], -x / 2, atol=2 / 32768)
    assert aio.info(tmp_path / "out.wav").frames == 22050  # the file was written too


NO_DEVICE = """
pcm.!default { type hw card 99 }
ctl.!default { type hw card 99 }
"""


def test_no_sound_device_is_one_error_line(tmp_path):
    # ALSA's default points at a card that is not there, so PortAudio finds no device; the
    # error surfaces when the sink is made, before any output is written
    import mlx_audio_io as aio

    (tmp_path / ".asoundrc").write_text(NO_DEVICE)
    aio.save(tmp_path / "in.wav", np.zeros((4000, 2), np.float32), 8000)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    cli = str(__import__("pathlib").Path(sys.executable).with_name("mlx-audio-stream"))
    for extra in ([], ["--quiet"]):
        r = subprocess.run([cli, "in.wav", "out.wav", "--play", *extra], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert r.stderr.startswith("mlx-audio-stream: error: opening the sound output failed "
                                   "for device 'default': ")  # fmt: skip
        assert not (tmp_path / "out.wav").exists()
    code = """
        import mlx_audio_streaming as ms
        for make in (ms.SpeakerSink, ms.MicrophoneSource):
            try:
                make()
            except ms.AudioDeviceError as e:
                assert isinstance(e, RuntimeError) and e.__cause__ is not None
                print(e)
    """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("opening the sound output failed for device 'default'")
    assert out[1].startswith("opening the sound input failed for device 'default'")


def test_speaker_sink_refuses_a_chunk_at_another_rate(tmp_path):
    _run(
        tmp_path,
        """
        import numpy as np, mlx_audio_streaming as ms
        def gen():
            yield np.zeros((2, 1600), np.float32)
        sink = ms.SpeakerSink(sample_rate=44100)
        p = ms.StreamingPipeline(ms.CallbackSource(gen, 16000, 2), None, sink)
        p.start()
        try:
            p.wait()
            raise SystemExit("16 kHz audio was played at 44.1 kHz")
        except ms.PipelineError as e:
            assert "it plays 44100 Hz, got a 16000 Hz chunk" in str(e), e
    """,
    )
