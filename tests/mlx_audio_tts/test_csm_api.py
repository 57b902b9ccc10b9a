"""CSM through the package's calls: generate_audio / generate_audio_streaming with ref_audio
and ref_text, utils.load_model with its Mimi codec, the CLI. The tiny CSM of test_csm.py
speaks through the reduced Mimi fixture (5 codebooks of 32; CSM's 4 are the first 4), its
codes scripted below 32 so that Mimi takes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np
import pytest
from mlx_audio_tts import cli
from mlx_audio_tts import generate as gen
from mlx_audio_tts.codecs import mimi
from mlx_audio_tts.generate import generate_audio, generate_audio_streaming
from mlx_audio_tts.models import csm
from mlx_audio_tts.utils import load_model
from test_csm import FIX, _scripted, _tokenizer

MIMI_FIX = Path(__file__).parent.parent / "fixtures" / "mimi"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A CSM folder (transformers layout) with its tokenizer and Mimi in mimi/."""
    d = tmp_path_factory.mktemp("csm")
    for f in ("config.json", "model.safetensors"):
        shutil.copy(FIX / f, d / f)
    _tokenizer(d / "tokenizer.json")
    shutil.copytree(MIMI_FIX, d / "mimi", ignore=shutil.ignore_patterns("*.npz"))
    return d


def _speaking(m, frames_per_segment=(6,), seed=0):
    """``m`` whose generate_frames answers each call with the next script (codes < 32)."""
    rng = np.random.default_rng(seed)
    scripts = iter(
        [*rng.integers(1, 32, (n, m.num_codebooks)).tolist(), [0] * m.num_codebooks]
        for n in frames_per_segment
    )
    real = csm.CSM.generate_frames.__get__(m)
    m.generate_frames = lambda *a, **k: real(*a, **{**k, "sampler": _scripted(next(scripts))})
    return m


@pytest.fixture
def model(folder):
    m = load_model(folder)
    assert isinstance(m, csm.CSM) and isinstance(m.codec, mimi.Mimi)
    return m


@pytest.fixture
def ref_wav(tmp_path) -> Path:
    """0.5 s of stereo at 16 kHz: resampled to 24 kHz and mixed to mono for the context."""
    t = np.arange(8000) / 16000
    x = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], 1) * 0.3
    path = tmp_path / "ref.wav"
    aio.save(path, x.astype(np.float32), 16000)
    return path


def test_generate_audio_with_a_reference_voice(model, ref_wav, tmp_path):
    seen = []
    real_encode = model.codec.encode
    model.codec.encode = lambda audio: seen.append(np.asarray(audio).shape) or real_encode(audio)
    _speaking(model, (6,))
    (path,) = generate_audio("Hello from Sesame.", model=model, ref_audio=str(ref_wav),
                             ref_text="A reference.", file_prefix=str(tmp_path / "c"),
                             verbose=False)  # fmt: skip
    audio, rate = aio.load(path)
    assert rate == 24000 and audio.shape == (6 * model.codec.samples_per_frame, 1)
    assert seen == [(12000, 1)]  # 0.5 s at 24 kHz, mono


def test_streaming_equals_one_shot(model, ref_wav):
    """Mimi is causal: its streaming decoder's chunks equal the one-shot decode (in memory:
    the random fixture's audio passes 1, which a float WAV would clip)."""
    codes = np.random.default_rng(0).integers(1, 32, (9, model.num_codebooks)).T
    whole = np.asarray(model.codec.decode(mx.array(codes)))[:, 0]
    for chunk_tokens, ultra in ((7, True), (21, False), (35, True)):
        _speaking(model, (9,))
        chunks = list(generate_audio_streaming(
            "Hello.", model=model, ref_audio=str(ref_wav), ref_text="Ref.",
            streaming_chunk_tokens=chunk_tokens, ultra_low_latency=ultra,
            respect_source_boundaries=True,
        ))  # fmt: skip
        spf = model.codec.samples_per_frame  # the reduced Mimi's
        assert len(chunks[0]) == (1 if ultra else chunk_tokens // 7) * spf
        streamed = np.concatenate(chunks)
        np.testing.assert_allclose(streamed, whole, atol=1e-5 * np.abs(whole).max())


def test_reference_errors(model, ref_wav):
    with pytest.raises(ValueError, match="ref_text must be the transcript of ref_audio"):
        next(generate_audio_streaming("Hi.", model=model, ref_audio=str(ref_wav)))
    with pytest.raises(ValueError, match="ref_text was given without ref_audio"):
        next(generate_audio_streaming("Hi.", model=model, ref_text="words"))
    with pytest.raises(FileNotFoundError):
        next(generate_audio_streaming("Hi.", model=model, ref_audio="/no/such.wav",
                                      ref_text="x"))  # fmt: skip
    with pytest.raises(ValueError, match="topk must be an int >= 1"):
        next(generate_audio_streaming("Hi.", model=model, top_k=0))
    with pytest.raises(ValueError, match="speaker must be a non-negative int"):
        next(generate_audio_streaming("Hi.", model=model, ref_audio=str(ref_wav),
                                      ref_text="x", speaker=-1))  # fmt: skip
    with pytest.raises(ValueError, match="speed is a Kokoro option"):
        next(generate_audio_streaming("Hi.", model=model, speed=1.3))


def test_codec_missing_is_a_clear_error(folder, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("mimi"))
    from mlx_audio_tts.utils import load_csm

    with pytest.raises(RuntimeError, match="CSM needs the Mimi codec"):
        load_csm(str(bare), codec_path=str(tmp_path / "nowhere"))


def test_cli_generate_with_ref_audio(model, folder, ref_wav, tmp_path, monkeypatch):
    _speaking(model, (4,))
    monkeypatch.setattr(gen, "load_model", lambda path: model)
    rc = cli.main(["generate", "--model", str(folder), "--text", "Hello from Sesame.",
                   "--ref_audio", str(ref_wav), "--ref_text", "A reference.", "--quiet",
                   "--file_prefix", str(tmp_path / "cli")])  # fmt: skip
    assert rc == 0
    assert aio.load(tmp_path / "cli_000.wav")[0].shape == (4 * model.codec.samples_per_frame, 1)


def test_served_through_the_registry(model):
    import asyncio

    from mlx_audio_tts.serving import ModelRegistry

    registry = ModelRegistry(["csm"], loader=lambda name: model)
    assert registry.kind() == "csm" and registry.voices() == ["0", "1"]
    assert registry.default_voice() == "0"
    _speaking(model, (3,))

    async def run():
        return [c async for c, _ in registry.stream("Hi.", voice="1")]

    chunks = asyncio.run(run())
    assert sum(map(len, chunks)) == 3 * model.codec.samples_per_frame
    with pytest.raises(ValueError, match="CSM's voice comes from ref_audio"):
        next(generate_audio_streaming("Hi.", model=model, voice="af_heart"))
    registry.close()
