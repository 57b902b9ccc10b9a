"""The streaming API (generate_audio_streaming, generate_audio_with_callback, the CLI's
--real_streaming), Orpheus segmenting, StreamingAudioProcessor and the Rechunker, on the tiny
Orpheus of test_orpheus.py (its tokens scripted so that it speaks) and the Kokoro fixture."""

from __future__ import annotations

import warnings

import mlx_audio_io as aio

import mlx.core as mx
import numpy as np
import pytest
from mlx_audio_tts import cli
from mlx_audio_tts import generate as gen
from mlx_audio_tts.audio_utils import Rechunker, StreamingAudioProcessor
from mlx_audio_tts.generate import (
    generate_audio,
    generate_audio_streaming,
    generate_audio_with_callback,
)
from mlx_audio_tts.models.kokoro import KokoroPipeline
from mlx_audio_tts.models.orpheus import model as orpheus
from mlx_audio_tts.models.orpheus import protocol as p
from mlx_audio_tts.text_split import split_text
from mlx_audio_tts.utils import load_model
from test_orpheus import _frames, _scripted
from test_orpheus import folder as orpheus_folder  # noqa: F401  (a fixture)


def _speaking(m, frames_per_segment=(20,), seed=0):
    """``m`` with generate_tokens answering each call (segment) with the next script."""
    scripts = iter(
        [t for f in _frames(n, seed=seed + i) for t in p.frame_tokens(*f)]
        + [p.END_OF_SPEECH, 1, 2, 3]
        for i, n in enumerate(frames_per_segment)
    )
    real = orpheus.OrpheusModel.generate_tokens.__get__(m)
    m.generate_tokens = lambda *a, **k: real(*a, **{**k, "sampler": _scripted(next(scripts))})
    return m


@pytest.fixture
def model(orpheus_folder):  # noqa: F811
    return orpheus.load_model(orpheus_folder)


def _one_shot(m, text="Hello there.", frames=(20,), **kwargs):
    return np.asarray(_speaking(m, frames).generate(text, seed=5, **kwargs))[:, 0]


@pytest.mark.parametrize("chunk_tokens", [7, 14, 21, 35])
@pytest.mark.parametrize("ultra", [True, False])
def test_clean_streaming_equals_one_shot_generation(model, chunk_tokens, ultra):
    whole = _one_shot(model)
    assert len(whole) == 20 * model.codec.samples_per_frame
    _speaking(model)
    chunks = list(generate_audio_streaming(
        "Hello there.", model=model, seed=5, streaming_chunk_tokens=chunk_tokens,
        ultra_low_latency=ultra, output_chunk_duration_ms=2,
    ))  # fmt: skip
    assert all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    streamed = np.concatenate(chunks)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-4 * np.abs(whole).max())


def test_pieces_come_as_soon_as_they_are_exact(model):
    """ultra_low_latency: the first frame once the decoder's lookahead exists after it; then
    chunk_tokens / 7 frames each; the tail at the end of speech."""
    spf, reach = model.codec.samples_per_frame, model.codec.decoder_reach()
    sampled = []
    real = orpheus.OrpheusModel.generate_tokens.__get__(model)
    script = [t for f in _frames(20) for t in p.frame_tokens(*f)] + [p.END_OF_SPEECH, 1, 2, 3]
    inner = _scripted(script)

    def counting(logprobs):
        sampled.append(1)
        return inner(logprobs)

    model.generate_tokens = lambda *a, **k: real(*a, **{**k, "sampler": counting})
    seen = []
    for piece in model.stream("Hello there.", chunk_tokens=21, seed=1):
        seen.append((len(piece.audio) // spf, len(sampled), piece.last))
    # mlx-lm samples one token ahead of the one it yields
    first_at = (1 + reach) * 7 + 1
    assert seen[0] == (1, first_at, False)
    assert [s[0] for s in seen[1:-1]] == [3] * ((20 - 1 - reach) // 3)
    assert seen[-1][2] and sum(s[0] for s in seen) == 20
    model.generate_tokens = lambda *a, **k: real(*a, **{**k, "sampler": _scripted(script)})
    plain = list(model.stream("Hello there.", chunk_tokens=21, ultra_low_latency=False, seed=1))
    assert len(plain[0].audio) == 3 * spf


def test_long_text_is_generated_segment_by_segment(model):
    text = "First sentence here. " * 10 + "\nA new paragraph. And the end!"
    parts = model.segments(text)
    assert len(parts) == 3 and all(len(s) <= model.segment_chars for s in parts)
    assert " ".join(parts).split() == text.split()
    prompts = []
    real = orpheus.OrpheusModel.prompt.__get__(model)
    model.prompt = lambda t, v="tara": prompts.append((t, v)) or real(t, v)
    whole = _one_shot(model, text, frames=(8, 9, 10), voice="leo")
    assert [t for t, _ in prompts] == parts and {v for _, v in prompts} == {"leo"}
    assert len(whole) == 27 * model.codec.samples_per_frame
    _speaking(model, (8, 9, 10))
    metas = []
    summary = generate_audio_with_callback(
        text, lambda c, m: metas.append((c, m)), model=model, seed=5, voice="leo",
        output_chunk_duration_ms=3,
    )  # fmt: skip
    streamed = np.concatenate([c for c, _ in metas])
    np.testing.assert_allclose(streamed, whole, atol=1e-4 * np.abs(whole).max())
    assert [m["chunk_index"] for _, m in metas] == list(range(len(metas)))
    assert [m["is_last"] for _, m in metas] == [False] * (len(metas) - 1) + [True]
    assert sorted({m["segment_index"] for _, m in metas}) == [0, 1, 2]
    assert all(m["sample_rate"] == 24000 for _, m in metas)
    elapsed = [m["elapsed_s"] for _, m in metas]
    assert elapsed == sorted(elapsed) and metas[0][1]["first_chunk_s"] == elapsed[0]
    assert summary["chunks"] == len(metas) and summary["samples"] == len(whole)
    assert summary["real_time_factor"] > 0 and summary["first_chunk_s"] == elapsed[0]


def test_chunk_durations(model):
    rate = 24000
    _speaking(model, (40,))
    chunks = list(generate_audio_streaming("Hi.", model=model, output_chunk_duration_ms=5,
                                           ultra_low_latency=False))  # fmt: skip
    assert {len(c) for c in chunks[:-1]} == {120} and 0 < len(chunks[-1]) <= 120
    assert sum(map(len, chunks)) == 40 * model.codec.samples_per_frame
    _speaking(model, (40,))
    pieces = list(generate_audio_streaming("Hi.", model=model, respect_source_boundaries=True,
                                           streaming_chunk_tokens=14))  # fmt: skip
    spf = model.codec.samples_per_frame
    assert [len(c) // spf for c in pieces[:3]] == [1, 2, 2] and rate == model.sample_rate


def test_a_model_that_never_stops_is_bounded_with_a_warning(model):
    _speaking(model, (400,))
    with pytest.warns(UserWarning, match="stopped at max_tokens=70 .* the speech is cut"):
        chunks = list(generate_audio_streaming("Hi.", model=model, max_tokens=70))
    assert sum(map(len, chunks)) == 10 * model.codec.samples_per_frame


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"streaming_chunk_tokens": 10}, "positive multiple of 7"),
        ({"streaming_chunk_tokens": 0}, "positive multiple of 7"),
        ({"streaming_chunk_tokens": -7}, "positive multiple of 7"),
        ({"streaming_chunk_tokens": 7.0}, "positive multiple of 7"),
        ({"streaming_chunk_tokens": True}, "positive multiple of 7"),
        ({"output_chunk_duration_ms": 0}, r"output_chunk_duration_ms must be a number in"),
        ({"output_chunk_duration_ms": float("nan")}, "output_chunk_duration_ms"),
        ({"temperature": -0.5}, "temperature must be a number >= 0"),
        ({"top_p": 1.5}, "top_p must be"),
        ({"max_tokens": 0}, "max_tokens must be at least 7"),
        ({"speed": 1.5}, "speed is a Kokoro option"),
        ({"seed": "x"}, "seed must be an int"),
    ],
)
def test_bad_streaming_arguments_fail_before_generating(model, kwargs, message):
    model.generate_tokens = None  # would raise TypeError if generation started
    with pytest.raises(ValueError, match=message):
        next(generate_audio_streaming("Hi.", model=model, **kwargs))


def test_other_errors(model):
    with pytest.raises(ValueError, match="text must be a non-empty string"):
        next(generate_audio_streaming("  ", model=model))
    with pytest.raises(ValueError, match="callback must be callable"):
        generate_audio_with_callback("Hi.", "not a function", model=model)
    _speaking(model)
    with pytest.warns(UserWarning, match=r"not one of Orpheus' trained voices \(tara, leah"):
        chunks = list(generate_audio_streaming("Hi.", model=model, voice="af_heart"))
    assert sum(map(len, chunks)) > 0

    class Stop(Exception):
        pass

    def callback(chunk, meta):
        raise Stop

    _speaking(model)
    with pytest.raises(Stop):
        generate_audio_with_callback("Hi.", callback, model=model)


def test_generate_audio_writes_orpheus_segments(model, tmp_path):
    _speaking(model, (5, 6))
    paths = generate_audio("One. " * 40, model=model, file_prefix=str(tmp_path / "o"),
                           verbose=False, seed=3)  # fmt: skip
    assert [x.name for x in paths] == ["o_000.wav", "o_001.wav"]
    lengths = [aio.info(x).frames for x in paths]
    assert lengths == [5 * model.codec.samples_per_frame, 6 * model.codec.samples_per_frame]
    with pytest.raises(ValueError, match="speed is a Kokoro option"):
        generate_audio("Hi.", model=model, speed=1.2, verbose=False)


def test_orpheus_through_load_model_and_the_model_cache(orpheus_folder, monkeypatch):  # noqa: F811
    gen.clear_model_cache()
    m = gen.load_cached(str(orpheus_folder))
    assert isinstance(m, orpheus.OrpheusModel) and gen.load_cached(str(orpheus_folder)) is m
    assert isinstance(load_model(orpheus_folder), orpheus.OrpheusModel)
    gen.clear_model_cache()


def test_cli_real_streaming(orpheus_folder, tmp_path, monkeypatch, capsys):  # noqa: F811
    m = _speaking(orpheus.load_model(orpheus_folder), (12,))
    monkeypatch.setattr(gen, "load_cached", lambda path, revision=None: m)
    out = tmp_path / "s"
    assert cli.main(["generate", "--model", str(orpheus_folder), "--text", "Hello there.",
                     "--voice", "tara", "--real_streaming", "--ultra_low_latency",
                     "--streaming_chunk_tokens", "14", "--temperature", "0.5", "--top_p", "0.9",
                     "--repetition_penalty", "1.1", "--max_tokens", "500", "--seed", "2",
                     "--file_prefix", str(out)]) == 0  # fmt: skip
    audio, rate = aio.load(tmp_path / "s.wav")
    assert rate == 24000 and audio.shape == (12 * m.codec.samples_per_frame, 1)
    err = capsys.readouterr().err
    assert "first chunk after" in err and "wrote" in err
    with pytest.raises(SystemExit):
        cli.main(["generate", "--text", "x", "--real_streaming",
                  "--streaming_chunk_tokens", "abc"])  # fmt: skip


def test_cli_bad_chunk_size_is_one_error_line(orpheus_folder, tmp_path, capsys):  # noqa: F811
    rc = cli.main(["generate", "--model", str(orpheus_folder), "--text", "Hi.",
                   "--real_streaming", "--streaming_chunk_tokens", "10",
                   "--file_prefix", str(tmp_path / "x")])  # fmt: skip
    assert rc != 0
    assert "positive multiple of 7" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()


# Kokoro through the same two functions


def test_kokoro_streams_segment_by_segment(kokoro_folder, tmp_path):
    kokoro = load_model(kokoro_folder)
    text = "The first sentence is here. And a second one follows it."
    mx.random.seed(0)
    metas = []
    generate_audio_with_callback(
        text, lambda c, m: metas.append((c, m)), model=kokoro, model_path=str(kokoro_folder),
        voice="af_heart", ultra_low_latency=True, respect_source_boundaries=True,
    )  # fmt: skip
    assert [m["segment_index"] for _, m in metas] == [0, 1]  # one sentence each
    assert metas[-1][1]["is_last"] and not metas[0][1]["is_last"]
    # without ultra_low_latency it cuts as generate_audio does, and the audio is the same
    mx.random.seed(0)
    chunks = list(generate_audio_streaming(text, model=kokoro, model_path=str(kokoro_folder),
                                           voice="af_heart", ultra_low_latency=False))  # fmt: skip
    mx.random.seed(0)
    pipeline = KokoroPipeline("a", model=kokoro, repo_id=str(kokoro_folder))
    whole = np.concatenate([np.asarray(r.audio[0]) for r in pipeline(text, "af_heart")])
    streamed = np.concatenate(chunks)
    assert {len(c) for c in chunks[:-1]} == {3600}
    np.testing.assert_allclose(streamed, whole, atol=1e-4 * np.abs(whole).max())


# the pieces


def test_streaming_audio_processor_crossfades():
    rate, fade = 24000, 240  # 10 ms
    t = np.arange(24000) / rate
    signal = np.sin(2 * np.pi * 220 * t).astype(np.float32)
    chunks = np.array_split(signal, 7)
    proc = StreamingAudioProcessor(crossfade_ms=10.0)
    outs = [proc.process_chunk(c) for c in chunks]
    total = proc.get_concatenated_audio()
    assert len(total) == len(signal) - 6 * fade  # each boundary overlaps 10 ms
    assert len(np.concatenate([*outs, proc.flush()])) == len(total)
    np.testing.assert_array_equal(total[: len(chunks[0]) - fade], chunks[0][:-fade])
    assert np.abs(total).max() <= 1.0 + 1e-6
    plain = StreamingAudioProcessor(crossfade_ms=0)
    for c in chunks:
        plain.process_chunk(c[:, None])  # [n, 1] too
    np.testing.assert_array_equal(plain.get_concatenated_audio(), signal)
    tiny = StreamingAudioProcessor(crossfade_ms=10.0)  # chunks shorter than the fade
    for c in np.array_split(signal[:1000], 20):
        tiny.process_chunk(c)
    assert len(tiny.get_concatenated_audio()) > 0
    with pytest.raises(ValueError, match="crossfade_ms must be"):
        StreamingAudioProcessor(crossfade_ms=-1)
    with pytest.raises(ValueError, match="mono"):
        proc.process_chunk(np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        proc.process_chunk(np.array([np.nan], np.float32))
    with pytest.raises(ValueError, match="keep=False"):
        StreamingAudioProcessor(keep=False).get_concatenated_audio()


def test_rechunker():
    r = Rechunker(4, first_now=True)
    assert [len(c) for c in r.push(np.ones(6, np.float32))] == [4, 2]  # at once
    assert [len(c) for c in r.push(np.ones(3, np.float32))] == []
    assert [len(c) for c in r.push(np.ones(6, np.float32))] == [4, 4]
    assert len(r.flush()) == 1 and len(r.flush()) == 0
    r = Rechunker(4)
    assert [len(c) for c in r.push(np.ones(6, np.float32))] == [4]
    with pytest.raises(ValueError):
        Rechunker(0)


def test_split_text():
    assert split_text("a b c", 100) == ["a b c"]
    assert split_text("One two. Three four. Five.", 10) == ["One two.", "Three", "four.", "Five."]
    assert split_text("Hello there. Bye now.\n\nNext.", 30) == ["Hello there. Bye now.", "Next."]
    assert split_text("x" * 50, 10) == ["x" * 50]  # one word stays whole
    assert split_text(" \n ", 10) == []
    with pytest.raises(ValueError, match="max_chars"):
        split_text("a", 0)
    with pytest.raises(ValueError, match="not a regular expression"):
        split_text("a", 5, "(")


def test_seed_gives_the_same_audio(model):
    a = _one_shot(model)
    b = _one_shot(model)
    np.testing.assert_array_equal(a, b)
    _speaking(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = np.asarray(model.generate("Hello there.", seed=6))[:, 0]
    assert not np.array_equal(a, c)  # other noise


def test_simple_streaming_example(orpheus_folder, tmp_path, monkeypatch, capsys):  # noqa: F811
    """The seed's comparison tool: clean and callback streaming equal normal generation."""
    from mlx_audio_tts import simple_streaming_example as example

    m = orpheus.load_model(orpheus_folder)
    scripts = [t for f in _frames(15) for t in p.frame_tokens(*f)] + [p.END_OF_SPEECH, 1, 2, 3]
    real = orpheus.OrpheusModel.generate_tokens.__get__(m)
    m.generate_tokens = lambda *a, **k: real(*a, **{**k, "sampler": _scripted(list(scripts))})
    monkeypatch.setattr(example, "load_cached", lambda path: m)
    args = ["--model", str(orpheus_folder), "--text", "Hi there.", "--out", str(tmp_path),
            "--streaming_chunk_tokens", "14"]  # fmt: skip
    assert example.main(args) == 0
    table = capsys.readouterr().out
    names = ["normal_000", "clean_streaming", "processed_streaming", "callback_streaming"]
    audio = {n: np.asarray(aio.load(tmp_path / f"consistent_{n}.wav")[0])[:, 0] for n in names}
    spf = m.codec.samples_per_frame
    assert len(audio["normal_000"]) == 15 * spf
    np.testing.assert_allclose(audio["clean_streaming"], audio["normal_000"], atol=1e-6)
    np.testing.assert_allclose(audio["callback_streaming"], audio["normal_000"], atol=1e-6)
    assert len(audio["processed_streaming"]) < 15 * spf  # the crossfades overlap
    assert "| clean_streaming |" in table and "(crossfaded joins)" in table


def test_kokoro_seed_repeats_the_audio(kokoro_folder):
    kokoro = load_model(kokoro_folder)
    kw = {"model": kokoro, "model_path": str(kokoro_folder), "voice": "af_heart"}
    a = np.concatenate(list(generate_audio_streaming("Hello there.", seed=3, **kw)))
    b = np.concatenate(list(generate_audio_streaming("Hello there.", seed=3, **kw)))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="seed must be an int"):
        next(generate_audio_streaming("Hello there.", seed=1.5, **kw))


@pytest.mark.parametrize("name", ["server", "stream-server"])
def test_cli_hands_the_servers_their_arguments(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    assert e.value.code == 0 and "--port" in capsys.readouterr().out
