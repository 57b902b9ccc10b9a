"""mlx-audio-stream, and Ctrl-C stopping a pipeline cleanly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx_audio_io as aio

import numpy as np
from signals import music

CLI = str(Path(sys.executable).with_name("mlx-audio-stream"))


def test_file_to_file_with_gain(tmp_path):
    x = music(44100 * 3, 44100, 2)
    aio.save(tmp_path / "in.wav", x, 44100)
    r = subprocess.run(
        [
            CLI,
            str(tmp_path / "in.wav"),
            str(tmp_path / "out.flac"),
            "--gain-db",
            "-6",
            "--chunk-size",
            "1000",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "3.0 / 3.0 s of audio" in r.stderr and "real time" in r.stderr  # the progress line
    y = np.asarray(aio.load(tmp_path / "out.flac")[0])
    np.testing.assert_allclose(y, x * 10 ** (-6 / 20), atol=2e-6)


def test_errors(tmp_path):
    r = subprocess.run(
        [CLI, str(tmp_path / "missing.wav"), str(tmp_path / "o.wav")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "file not found" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([CLI, str(tmp_path / "missing.wav")], capture_output=True, text=True)
    assert r.returncode == 2 and "give an OUTPUT file, --play, or both" in r.stderr


def test_ctrl_c_stops_the_pipeline_cleanly(tmp_path):
    script = """
import threading, time, numpy as np, mlx_audio_io as aio, mlx_audio_streaming as ms

def live():  # an endless real-time source, like a microphone
    while True:
        time.sleep(0.005)
        yield np.zeros((2, 256), np.float32)

p = ms.StreamingPipeline(ms.CallbackSource(live, 48000, 2), ms.GainProcessor(0.5),
                         ms.FileSink("out.wav"))
p.start()
print("started", flush=True)
try:
    p.wait()
except KeyboardInterrupt:
    alive = [t.name for t in threading.enumerate() if t.name.startswith("mlx_audio_streaming")]
    print("interrupted", alive, aio.info("out.wav").frames > 0, flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.5)
    t0 = time.perf_counter()
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert time.perf_counter() - t0 < 2
    assert proc.returncode == 0, err
    assert out.strip() == "interrupted [] True"  # no stage thread left, a valid file
