"""Text side of Kokoro and the user-facing calls: normalisation, G2P (misaki offline, the
espeak-ng fallback, missing-package errors), KokoroPipeline's segmentation,
generate_audio / the CLI, and quantize_model round trips. The model is the reduced-config
fixture (random weights, a 62-phoneme context that forces the splitting paths)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import mlx_audio_io as aio
from mlx_audio_io import quant as fast_quant

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx_audio_tts import cli
from mlx_audio_tts.g2p import load_g2p, resolve_lang_code
from mlx_audio_tts.generate import generate_audio
from mlx_audio_tts.models.kokoro import KokoroPipeline
from mlx_audio_tts.models.kokoro.voices import load_voice, style_for
from mlx_audio_tts.normalize import normalize_text, number_to_words, ordinal_words, year_words
from mlx_audio_tts.utils import load_model, quantize_model


@pytest.fixture(scope="module")
def folder(kokoro_folder) -> Path:
    """hexgrad's layout (conftest's ``kokoro_folder``)."""
    return kokoro_folder


@pytest.fixture(scope="module")
def model(folder):
    return load_model(folder)


@pytest.fixture(scope="module")
def english():
    return load_g2p("a")


@pytest.fixture(scope="module")
def pipeline(model, folder, english):
    return KokoroPipeline("a", model=model, repo_id=str(folder), g2p=english)


@pytest.mark.parametrize(
    "text, british, said",
    [
        ("It cost $3.50.", False, "It cost three dollars and fifty cents."),
        ("£1.01, €1 and $2.5 million", False,
         "one pound and one penny, one euro and two point five million dollars"),
        ("On 2024-03-05.", False, "On March fifth, twenty twenty-four."),
        ("On 2024-03-05.", True, "On the fifth of March, twenty twenty-four."),
        ("Due 1/2/2024", False, "Due January second, twenty twenty-four"),
        ("Due 1/2/2024", True, "Due the first of February, twenty twenty-four"),
        ("March 5th, 1999 and 5 March", False,
         "March fifth, nineteen ninety-nine and the fifth of March"),
        ("At 10:05 pm or 3:00.", False, "At ten oh five p m or three o'clock."),
        ("In 1905, 2005 and the 1990s", False,
         "In nineteen oh five, two thousand five and the nineteen nineties"),
        ("1,234 people, 12% and -3.25", False,
         "one thousand two hundred thirty-four people, twelve percent and minus three point "
         "two five"),
        ("101 dogs", True, "one hundred and one dogs"),
        ("the 21st and 12th, v1.2.3", False,
         "the twenty-first and twelfth, version one point two point three"),
        ("no digits here", False, "no digits here"),
    ],
)  # fmt: skip
def test_normalize_text(text, british, said):
    assert normalize_text(text, british) == said


def test_number_words():
    assert number_to_words(0) == "zero"
    assert number_to_words(1_000_000_000_001) == "one trillion one"
    assert number_to_words(10**15) == "one zero zero zero zero zero zero zero zero zero zero " \
        "zero zero zero zero zero"  # fmt: skip
    assert ordinal_words(20) == "twentieth" and ordinal_words(103) == "one hundred third"
    assert year_words(1900) == "nineteen hundred" and year_words(2000) == "two thousand"
    with pytest.raises(ValueError, match="text must be a str"):
        normalize_text(3)


def test_english_g2p_runs_misaki_offline(english):
    """misaki's lexicon path (spaCy from the installed re-upload, no download), with
    espeak-ng for the word outside the lexicon: the phonemes kokoro's KPipeline gives."""
    assert english.backend == "misaki"
    assert english("Hello world, this is a test of Kokoro.") == (
        "həlˈO wˈɜɹld, ðɪs ɪz ɐ tˈɛst ʌv kəkˈɔɹO."
    )
    assert load_g2p("en-gb")("Hello world.") == "həlˈQ wˈɜːld."
    assert english("   ") == ""


def test_espeak_languages_and_fallback(caplog):
    assert load_g2p("f")("Bonjour.") == "bɔ̃ʒˈuʁ."
    assert load_g2p("es").backend == "espeak"
    with caplog.at_level(logging.WARNING, logger="mlx_audio_tts.g2p"):
        g2p = load_g2p("a", spacy_model="no_such_spacy_model")
    assert g2p.backend == "espeak" and "espeak-ng alone" in caplog.text
    assert g2p("Hello world.") == "həlˈO wˈɜɹld."


def test_g2p_errors_name_what_to_install(monkeypatch):
    assert resolve_lang_code("pt-br") == "p" and resolve_lang_code("A") == "a"
    with pytest.raises(ValueError, match="unknown lang_code 'x'.*'a' \\(American English\\)"):
        resolve_lang_code("x")
    monkeypatch.setitem(sys.modules, "misaki.ja", None)
    with pytest.raises(RuntimeError, match=r"Japanese \('j'\) needs .*mlx-audio-tts\[ja\]"):
        load_g2p("j")
    monkeypatch.setitem(sys.modules, "misaki", None)
    with pytest.raises(RuntimeError, match=r"English \('a'\) needs the package 'misaki'.*\[en\]"):
        load_g2p("a")


def test_pipeline_yields_segments_the_model_would_speak(pipeline, model, folder):
    text = "The MLX King lives. Let him cook!\n\nOn 2024-03-05 it cost $3.50, or so we heard."
    mx.random.seed(3)
    results = list(pipeline(text, voice="af_heart", speed=1.2))
    pieces = [r.graphemes for r in results]
    assert pieces[0] == "The MLX King lives. Let him cook!"
    assert " ".join(pieces[1:]) == "On 2024-03-05 it cost $3.50, or so we heard."
    assert all(0 < len(r.phonemes) <= model.context_length - 2 for r in results)
    assert "dˈɑləɹz" in " ".join(r.phonemes for r in results)  # normalised before G2P
    pack = load_voice("af_heart", folder=folder)
    mx.random.seed(3)
    for r in results:
        graphemes, phonemes, audio = r
        assert audio.shape == (1, int(r.pred_dur.sum()) * model.config.hop_samples)
        want = model(phonemes, style_for(pack, len(phonemes)), 1.2).audio
        assert np.array_equal(np.asarray(audio[0]), np.asarray(want))


def test_pipeline_without_model_and_splitting(english):
    p = KokoroPipeline("a", model=False, g2p=english)
    long = " ".join(["This sentence is here to be long enough."] * 30)
    results = list(p([long, "Short."], split_pattern=None))
    assert all(r.audio is None and len(r.phonemes) <= 510 for r in results)
    assert len(results) == 4 and results[-1].graphemes == "Short."
    assert " ".join(r.graphemes for r in results[:-1]) == long


def test_pipeline_errors(pipeline, model, english):
    with pytest.raises(ValueError, match="a voice is needed"):
        next(pipeline("Hi."))
    with pytest.raises(ValueError, match="speed must be between 0.5 and 2.0, got 2.5"):
        next(pipeline("Hi.", voice="af_heart", speed=2.5))
    with pytest.raises(FileNotFoundError, match="voice 'nobody' not found"):
        next(pipeline("Hi.", voice="nobody"))
    with pytest.raises(ValueError, match="text must be a str"):
        next(pipeline(3, voice="af_heart"))
    with pytest.raises(ValueError, match="model must be a KokoroModel"):
        KokoroPipeline("a", model="hexgrad/Kokoro-82M", g2p=english)
    with pytest.raises(ValueError, match="pred_dur must give one duration per token"):
        model("ðɪs", mx.zeros((1, 256)), pred_dur=[1, 2])


def test_generate_audio_writes_each_segment(model, folder, tmp_path):
    text = "Hello there.\nIt is 10:30 now."
    paths = generate_audio(text, model_path=str(folder), file_prefix=tmp_path / "one" / "a",
                           verbose=False, model=model)  # fmt: skip
    assert [p.name for p in paths] == ["a_000.wav", "a_001.wav"]
    for p in paths:
        audio, sr = aio.load(p)
        assert sr == 24000 and audio.dtype == mx.float32 and audio.shape[0] > 0


@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_generate_audio_joins_and_resamples(model, folder, tmp_path, fmt, capsys):
    text = "Hello there.\nIt is 10:30 now."
    mx.random.seed(0)
    (path,) = generate_audio(text, model_path=str(folder), file_prefix=tmp_path / "b",
                             audio_format=fmt, sample_rate=16000, join_audio=True,
                             model=model)  # fmt: skip
    assert path.name == f"b.{fmt}"
    info = aio.info(path)
    assert info.sample_rate == 16000 and info.channels == 1
    mx.random.seed(0)
    lengths = [r.audio.shape[1] for r in KokoroPipeline("a", model, str(folder))(
        text, voice="af_heart")]  # fmt: skip
    assert abs(info.frames - sum(lengths) * 16000 / 24000) < 2000  # mp3 padding
    assert f"wrote {path}" in capsys.readouterr().err


def test_generate_audio_errors(model, tmp_path):
    kw = {"model": model, "file_prefix": tmp_path / "x", "verbose": False}
    with pytest.raises(ValueError, match="speed must be between 0.5 and 2.0, got 0.4"):
        generate_audio("Hi.", speed=0.4, **kw)
    with pytest.raises(ValueError, match="audio_format must be one of"):
        generate_audio("Hi.", audio_format="ogg", **kw)
    with pytest.raises(ValueError, match="sample_rate must be a positive int"):
        generate_audio("Hi.", sample_rate=0, **kw)
    with pytest.raises(ValueError, match="text must be a non-empty string"):
        generate_audio("  ", **kw)
    with pytest.raises(ValueError, match="nothing to say"):
        generate_audio("♪ ♪", **kw)
    assert not list(tmp_path.glob("x*"))


def test_cli_generate_and_quantize(folder, tmp_path, capsys):
    prefix = tmp_path / "cli" / "hello"
    rc = cli.main(["generate", "--text", "Hello, world.", "--model", str(folder),
                   "--file_prefix", str(prefix), "--audio_format", "flac", "--quiet"])  # fmt: skip
    assert rc == 0 and aio.info(f"{prefix}_000.flac").sample_rate == 24000
    assert cli.main(["generate", "--text", "Hi", "--model", str(folder), "--speed", "3"]) == 1
    assert "speed must be between 0.5 and 2.0" in capsys.readouterr().err
    out = tmp_path / "q4"
    assert cli.main(["quantize", "--model", str(folder), "--out", str(out), "--bits", "4",
                     "--group_size", "32"]) == 0  # fmt: skip
    assert json.loads((out / "config.json").read_text())["quantization"]["bits"] == 4
    assert cli.main(["generate", "--text", "Hi", "--model", str(tmp_path / "none")]) == 1
    assert "not found" in capsys.readouterr().err


def test_cli_play_without_a_sound_device_is_one_error_line(folder, tmp_path):
    # ALSA's default points at a card that is not there, so PortAudio finds no device: checked
    # before the model loads and anything is written, reported as the README promises
    (tmp_path / ".asoundrc").write_text(
        "pcm.!default { type hw card 99 }\nctl.!default { type hw card 99 }\n"
    )
    r = subprocess.run(
        [str(Path(sys.executable).with_name("mlx-audio-tts")), "generate", "--text", "Hello.",
         "--model", str(folder), "--file_prefix", str(tmp_path / "out"), "--play"],
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: playing failed for the default output device: ")
    assert "Traceback" not in r.stderr and not list(tmp_path.glob("out*"))


def _text_side(model, phonemes, pack):
    cap = {}
    n = model.tokenize(phonemes).shape[1]
    model(phonemes, style_for(pack, len(phonemes)), pred_dur=[2] * n, phase0=mx.zeros((1, 9)),
          noise=mx.zeros((1, 2 * n * model.config.hop_samples, 9)), capture=cap)  # fmt: skip
    return {k: np.asarray(cap[k]) for k in ("bert", "d", "F0", "N", "features")}


def test_quantize_model_round_trip(folder, tmp_path):
    """The seed's recipe: quantize, write config.json + kokoro-v1_0.safetensors, load back;
    8 bits keeps every text-side stage within 5% of float (random weights, small widths)."""
    pack = load_voice("af_heart", folder=folder)
    model = load_model(repo_id=str(folder))
    want = _text_side(model, "ðɪs ɪz ɐ tˈɛst.", pack)
    weights, config = quantize_model(model, model.config, 32, 8)
    assert config["quantization"] == {"group_size": 32, "bits": 8}
    assert any(k.endswith(".scales") for k in weights)
    out = tmp_path / "8bit"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(config))
    mx.save_safetensors(str(out / "kokoro-v1_0.safetensors"), weights, metadata={"format": "mlx"})
    loaded = load_model(out)
    assert isinstance(loaded.bert_encoder, nn.QuantizedLinear)
    # the products run on mlx_audio_io's kernel (MLX's CPU one: 30x slower for ALBERT's rows)
    assert type(loaded.bert_encoder) is fast_quant.QuantizedLinear
    assert type(model.bert_encoder) is fast_quant.QuantizedLinear  # quantize_model's own copy
    got = _text_side(loaded, "ðɪs ɪz ɐ tˈɛst.", pack)
    for k in want:
        assert np.abs(got[k] - want[k]).max() <= 0.05 * np.abs(want[k]).max(), k


def test_load_and_quantize_errors(model, folder, tmp_path):
    with pytest.raises(ValueError, match="bits must be one of"):
        quantize_model(model, model.config, 64, 7)
    with pytest.raises(ValueError, match="group_size must be one of"):
        quantize_model(model, model.config, 48, 8)
    with pytest.raises(ValueError, match="give model_path or repo_id, not both"):
        load_model(str(folder), repo_id="a/b")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bark"}))
    with pytest.raises(ValueError, match="model type 'bark' is not supported"):
        load_model(tmp_path)


def test_seed_flow_through_the_hub(folder, english, hub_server, hub_env, tmp_path):
    """The seed's calls against a (loopback) Hub repo: utils.load_model(repo_id=...), then
    a pipeline whose voice is fetched from the same repo, then generate_audio by repo id."""
    repo = tmp_path / "repo"
    shutil.copytree(folder, repo)
    hub_server.add_repo("prince-canuma/Kokoro-82M", repo)
    model = load_model(repo_id="prince-canuma/Kokoro-82M")
    pipeline = KokoroPipeline(lang_code="a", model=model, repo_id="prince-canuma/Kokoro-82M",
                              g2p=english)  # fmt: skip
    (graphemes, phonemes, audio), *_ = pipeline("The MLX King lives.", voice="af_bella")
    assert graphemes == "The MLX King lives." and audio.shape[0] == 1
    (path,) = generate_audio("Let him cook!", voice="af_heart", file_prefix=tmp_path / "cook",
                             join_audio=True, verbose=False)  # fmt: skip
    assert aio.info(path).frames > 0
