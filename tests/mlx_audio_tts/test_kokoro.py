"""Kokoro against the official kokoro 0.9.4, through fixtures written by
tools/parity/kokoro.py (a reduced config: every code path, small widths), plus loading in
every layout, voice packs and errors. No torch here."""

from __future__ import annotations

import io
import json
import pickle
import resource
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from mlx_audio_io.torchfile import load_torch_file

import mlx.core as mx
import numpy as np
import pytest
from mlx_audio_tts.models.kokoro import KokoroModel, ModelConfig, load_model, save_model
from mlx_audio_tts.models.kokoro.convert import flatten_checkpoint
from mlx_audio_tts.models.kokoro.istftnet import DepthwiseUpsample
from mlx_audio_tts.models.kokoro.modules import LSTM
from mlx_audio_tts.models.kokoro.voices import load_voice, read_voice_file, style_for
from parity_io import load_stages, rel_error

FIX = Path(__file__).parent.parent / "fixtures" / "kokoro"
VOICES = FIX / "voices"  # hexgrad's af_heart.pt and af_bella.pt, as released
TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    stages, data = load_stages(FIX / "kokoro_reduced_io")
    return {**data, "stages": stages}


def _hexgrad_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIX / "kokoro_reduced_config.json", folder / "config.json")
    shutil.copy(FIX / "kokoro_reduced.pth", folder / "kokoro-v1_0.pth")
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(_hexgrad_folder(tmp_path_factory.mktemp("hexgrad")))


def _sources(samples: int, seed: int = 1):
    """The SineGen draws tools/parity/kokoro.py fed to both sides."""
    rng = np.random.default_rng(seed)
    phase0 = rng.random((1, 9)).astype(np.float32)
    phase0[:, 0] = 0
    return phase0, rng.standard_normal((1, samples, 9)).astype(np.float32)


def _run(model, ref, capture):
    durations = ref["durations"]
    phase0, noise = _sources(int(durations.sum()) * 600)
    out = model(mx.array(ref["tokens"][None]), mx.array(ref["ref_s"]), pred_dur=durations,
                phase0=mx.array(phase0), noise=mx.array(noise), capture=capture)  # fmt: skip
    mx.eval(out.audio)
    return out


def test_every_stage_matches_the_official_model(model, ref):
    cap = {}
    out = _run(model, ref, cap)
    st = ref["stages"]
    bins = 11
    checks = {
        "ALBERT (PL-BERT) output": cap["bert"],
        "prosody encoder d": cap["d"],
        "durations (sum of sigmoids)": cap["duration"],
        "F0 curve": cap["F0"],
        "energy (N) curve": cap["N"],
        "text encoder": cap["t_en"],
        "decoder features (generator input)": cap["features"],
        "source STFT magnitudes": cap["har"][..., :bins],
        "source STFT (complex: magnitudes with phases)": np.asarray(cap["har"][..., :bins])
        * np.exp(1j * np.asarray(cap["har"][..., bins:])),
    }
    for name, ours in checks.items():
        assert rel_error(ours, st[name]) <= TOL, name
    # the generator on the reference's own source spectrum: conv_post and the audio
    gen_cap = {}
    s = mx.array(ref["ref_s"])[:, :128]
    audio = model.decoder.generator(cap["features"], s, har=mx.array(ref["har"]), capture=gen_cap)
    assert rel_error(gen_cap["post"], st["generator conv_post (same source)"]) <= TOL
    assert rel_error(audio[0], st["audio (same source spectrum)"]) <= TOL
    assert out.audio.shape == st["audio (end to end)"].shape == (int(ref["durations"].sum()) * 600,)
    assert np.array_equal(np.asarray(out.pred_dur), ref["durations"])


def test_harmonic_source_matches_torch_rounding(model, ref):
    """SineGen's phases reach 10^4 radians: the source only matches when the phase path is
    rounded as torch rounds it (double cumsum, fused interpolation)."""
    cap = {}
    _run(model, ref, cap)
    gen = model.decoder.generator
    f0 = mx.repeat(cap["F0"][..., None], gen.upsample_scale, axis=1)
    phase0, noise = _sources(f0.shape[1])
    har = gen.m_source(f0, mx.array(phase0), mx.array(noise))
    assert rel_error(har, ref["stages"]["harmonic source (SineGen + linear + tanh)"]) <= 1e-5


def test_pitfalls_of_other_ports_are_ruled_out(model, ref):
    # ALBERT's activation is the tanh approximation (gelu_new), not the exact GELU
    assert model.config.plbert["hidden_act"] == "gelu_new"
    layer = model.bert.encoder["albert_layer_groups"][0]["albert_layers"][0]
    assert layer.act == "gelu_new"
    # ReflectionPad1d((1, 0)) after the last upsampling (a zero pad changes the first frames
    # of conv_post, checked against the reference above) and the transposed convolutions'
    # stride/padding (the output is exactly 600 samples per frame)
    assert model.config.hop_samples == 600


def test_depthwise_upsample_is_the_transposed_convolution():
    up = DepthwiseUpsample(3)
    up.weight = mx.random.normal((3, 3))
    up.bias = mx.random.normal((3,))
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    w, b = np.asarray(up.weight), np.asarray(up.bias)
    want = np.zeros((2, 10 + 1, 3), np.float32)  # y[2i + j - 1] += x[i] w[j], cropped
    for i in range(5):
        for j in range(3):
            if 0 <= 2 * i + j - 1 < 11:
                want[:, 2 * i + j - 1] += x[:, i] * w[:, j]
    np.testing.assert_allclose(np.asarray(up(mx.array(x))), want[:, :10] + b, atol=1e-5)


def test_lstm_is_torchs_bidirectional_lstm():
    lstm = LSTM(5, 4)
    rng = np.random.default_rng(0)
    for k, v in list(lstm.parameters().items()):
        setattr(lstm, k, mx.array(rng.standard_normal(v.shape).astype(np.float32) * 0.5))
    x = rng.standard_normal((2, 7, 5)).astype(np.float32)
    p = {k: np.asarray(v) for k, v in lstm.parameters().items()}

    def run(suffix, order):
        h, c = np.zeros((2, 4)), np.zeros((2, 4))
        out = np.zeros((2, 7, 4))
        sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
        for t in order:
            g = (x[:, t] @ p[f"weight_ih_{suffix}"].T + p[f"bias_ih_{suffix}"]
                 + h @ p[f"weight_hh_{suffix}"].T + p[f"bias_hh_{suffix}"])  # fmt: skip
            i, f, gg, o = np.split(g, 4, axis=1)
            c = sig(f) * c + sig(i) * np.tanh(gg)
            h = sig(o) * np.tanh(c)
            out[:, t] = h
        return out

    want = np.concatenate([run("l0", range(7)), run("l0_reverse", range(6, -1, -1))], axis=-1)
    np.testing.assert_allclose(np.asarray(lstm(mx.array(x))), want, atol=1e-5)


def _params(m):
    from mlx.utils import tree_flatten

    return {k: np.asarray(v) for k, v in tree_flatten(m.parameters())}


def test_loads_the_flat_torch_layout_and_our_own(model, tmp_path):
    """The MLX-community layout (flat names, torch layout, safetensors) and ours (written by
    save_model) load to the same parameters as hexgrad's .pth."""
    state = flatten_checkpoint(load_torch_file(FIX / "kokoro_reduced.pth"))
    community = tmp_path / "community"
    community.mkdir()
    shutil.copy(FIX / "kokoro_reduced_config.json", community / "config.json")
    mx.save_safetensors(str(community / "kokoro-v1_0.safetensors"),
                        {k: mx.array(v.astype(np.float32)) for k, v in state.items()})  # fmt: skip
    want = _params(model)
    for loaded in (load_model(community), load_model(save_model(model, tmp_path / "ours"))):
        got = _params(loaded)
        assert got.keys() == want.keys()
        assert all(np.array_equal(got[k], want[k]) for k in want)
    cfg = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert cfg["model_type"] == "kokoro" and cfg["decoder_width"] == 64


def test_load_by_repo_id_through_the_hub(model, hub_server, hub_env, tmp_path):
    hub_server.add_repo("hexgrad/Kokoro-82M", _hexgrad_folder(tmp_path / "repo"))
    loaded = KokoroModel.from_pretrained("hexgrad/Kokoro-82M")
    assert all(np.array_equal(v, _params(model)[k]) for k, v in _params(loaded).items())


def test_real_voice_packs_load_bit_exactly():
    for name in ("af_heart", "af_bella"):
        path = VOICES / f"{name}.pt"
        pack = read_voice_file(path)
        assert pack.shape == (510, 1, 256) and pack.dtype == mx.float32
        with zipfile.ZipFile(path) as z:  # the tensor's raw storage, little-endian float32
            raw = next(z.read(n) for n in z.namelist() if n.endswith("/data/0"))
        assert np.asarray(pack).tobytes() == raw
        assert style_for(pack, 12).shape == (1, 256)
        assert np.array_equal(np.asarray(style_for(pack, 12)), np.asarray(pack[11]))


def test_voice_blends_and_layouts(tmp_path):
    heart = read_voice_file(VOICES / "af_heart.pt")
    bella = read_voice_file(VOICES / "af_bella.pt")
    mean = load_voice("af_heart,af_bella", folder=VOICES)
    np.testing.assert_allclose(np.asarray(mean), (np.asarray(heart) + np.asarray(bella)) / 2)
    weighted = load_voice({"af_heart": 3, "af_bella": 1}, folder=VOICES)
    np.testing.assert_allclose(
        np.asarray(weighted), 0.75 * np.asarray(heart) + 0.25 * np.asarray(bella), atol=1e-6
    )
    (tmp_path / "voices").mkdir()
    mx.save_safetensors(str(tmp_path / "voices" / "af_x.safetensors"), {"voice": heart})
    assert np.array_equal(np.asarray(load_voice("af_x", folder=tmp_path)), np.asarray(heart))


def test_errors(model, tmp_path):
    with pytest.raises(ValueError, match="do not fit Kokoro's context"):
        model.tokenize("a" * 600)
    with pytest.raises(ValueError, match="style vector must have 256 values"):
        model(mx.array([[0, 5, 0]]), mx.zeros((1, 128)))
    with pytest.raises(ValueError, match=r"input ids must be \[1, tokens\]"):
        model(mx.zeros((2, 3), mx.int32), mx.zeros((1, 256)))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_model(tmp_path / "missing")
    bad = _hexgrad_folder(tmp_path / "bad")
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "hidden_dim": 64}))
    with pytest.raises(ValueError, match="loading failed for .*does not fit"):
        load_model(bad)
    with pytest.raises(FileNotFoundError, match="voice 'nobody' not found"):
        load_voice("nobody", folder=tmp_path)
    (tmp_path / "v.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="loading failed"):
        load_voice(tmp_path / "v.safetensors")
    mx.save_safetensors(str(tmp_path / "w.safetensors"), {"voice": mx.zeros((4, 128))})
    with pytest.raises(ValueError, match="not a Kokoro voice pack"):
        load_voice(str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="weights must be positive"):
        load_voice({"af_heart": 0}, folder=VOICES)


def test_random_model_builds_from_the_default_config():
    cfg = ModelConfig.from_dict({"decoder": {"upsample_initial_channel": 512}, "foo": 1})
    assert cfg.istftnet["upsample_rates"] == [10, 6] and cfg.extra == {"foo": 1}
    assert cfg.to_dict()["foo"] == 1 and cfg.hop_samples == 600


def test_adain_batches_as_single_items():
    """The batch-of-one path folds the style into the fused norm; larger batches normalise,
    then apply the style; both with the fused activations."""
    from mlx_audio_tts.models.kokoro.istftnet import AdaIN1d

    ada = AdaIN1d(8, 6)
    x = mx.random.normal((2, 40, 6), key=mx.random.key(1)) * 3
    s = mx.random.normal((2, 8), key=mx.random.key(2))
    alpha = mx.random.uniform(0.5, 2.0, (6,), key=mx.random.key(3))
    for act, param in ((None, None), ("snake", alpha), ("leaky_relu", 0.2)):
        both = ada(x, s, act, param)
        for i in range(2):
            one = ada(x[i : i + 1], s[i : i + 1], act, param)
            np.testing.assert_allclose(np.asarray(both[i]), np.asarray(one[0]), atol=1e-5)


# Hardening (issue 15): bad config.json files, weights files and blend weights raise ValueError
# naming the file and the field; none reaches the model as a TypeError or an abort.
BAD_CONFIGS = {
    "not JSON": (b"{'hidden_dim': 512,", "not valid JSON"),
    "not UTF-8": (b'{"hidden_dim": "\xff"}', "not UTF-8"),
    "a list": (b"[1, 2]", "expected a JSON object, got a list"),
    "nested too deeply": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "hidden_dim a string": ({"hidden_dim": "48"}, "hidden_dim must be an int in"),
    "n_layer a float": ({"n_layer": 2.5}, "n_layer must be an int in"),
    "n_layer a bool": ({"n_layer": True}, "n_layer must be an int in"),
    "n_layer over": ({"n_layer": 65}, r"n_layer must be an int in \[1, 64\], got 65"),
    "hidden_dim odd": ({"hidden_dim": 47}, "hidden_dim must be even"),
    "dropout NaN": ({"dropout": float("nan")}, "dropout must be a number in"),
    "multispeaker a string": ({"multispeaker": "yes"}, "multispeaker must be true or false"),
    "plbert a list": ({"plbert": [1]}, "plbert must be a JSON object"),
    "plbert heads": ({"plbert": {"hidden_size": 64, "num_attention_heads": 3}}, "multiple of"),
    "plbert layers": ({"plbert": {"num_hidden_layers": 10**9}}, "plbert.num_hidden_layers"),
    "rates a string": ({"istftnet": {"upsample_rates": "10,6"}}, "upsample_rates must be a list"),
    "dilations": ({"istftnet": {"resblock_dilation_sizes": [[1, 0], [1]]}}, r"sizes\[0\]\[1\]"),
    "hop": ({"istftnet": {"upsample_rates": [64, 64], "gen_istft_hop_size": 64}}, "samples per"),
    "vocab a list": ({"vocab": ["a"]}, "vocab must be a JSON object"),
    "vocab an empty list": ({"vocab": []}, "vocab must be a JSON object"),
    "plbert zero": ({"plbert": 0}, "plbert must be a JSON object"),
    "vocab index": ({"vocab": {"a": 178}}, r"vocab\['a'\] must be an int in \[0, 177\]"),
    "quantization": ({"quantization": {"bits": 7, "group_size": 64}}, "quantization must have"),
    "too big overall": (
        {"hidden_dim": 4096, "n_layer": 64, "plbert": {"hidden_size": 64}},
        "parameters, more than the 1,000,000,000 allowed",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_configs_name_the_file_and_field(case, tmp_path):
    from mlx_audio_tts.utils import load_model as load_any

    folder = _hexgrad_folder(tmp_path / "m")
    change, message = BAD_CONFIGS[case]
    if isinstance(change, bytes):
        (folder / "config.json").write_bytes(change)
    else:
        cfg = json.loads((folder / "config.json").read_text())
        for key, value in change.items():
            cfg[key] = {**cfg[key], **value} if isinstance(cfg.get(key), dict) and isinstance(
                value, dict) and key != "vocab" else value  # fmt: skip
        (folder / "config.json").write_text(json.dumps(cfg))
    for load in (load_model, load_any):
        with pytest.raises(ValueError, match=message) as e:
            load(folder)
        assert f"loading failed for '{folder / 'config.json'}': " in str(e.value)


def test_huge_n_layer_is_refused_under_a_memory_cap(tmp_path):
    """n_layer=100000 used to abort the process under a 2 GiB address-space cap."""
    folder = _hexgrad_folder(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "n_layer": 100_000}))
    child = (
        "import sys\nfrom mlx_audio_tts.models.kokoro import load_model\n"
        "try:\n    load_model(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", child, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "n_layer must be an int in [1, 64], got 100000" in run.stdout


def test_bad_weight_files_name_the_file(tmp_path):
    folder = _hexgrad_folder(tmp_path / "m")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # {"bert": {1: [2]}}: a torch.save file, not weights
        zf.writestr("archive/data.pkl", pickle.dumps({"bert": {1: [2]}}, protocol=2))
    (folder / "kokoro-v1_0.pth").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="kokoro-v1_0.pth': not a Kokoro state dict"):
        load_model(folder)
    (folder / "kokoro-v1_0.pth").unlink()
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(ValueError, match="loading failed for '.*model.safetensors'"):
        load_model(folder)


@pytest.mark.parametrize(
    "weights",
    [
        {"af_heart": float("nan"), "af_bella": 1.0},
        {"af_heart": float("inf"), "af_bella": 1.0},
        {"af_heart": -1.0, "af_bella": 2.0},
        {"af_heart": 0.0, "af_bella": 0.0},
        {"af_heart": "0.5", "af_bella": 1.0},
        {"af_heart": True, "af_bella": 1.0},
        {"af_heart": None},
    ],
)
def test_blend_weights_must_be_positive_and_finite(weights):
    with pytest.raises(ValueError, match="voice weights must be positive finite numbers, got"):
        load_voice(weights, folder=VOICES)


def test_huge_blend_weights_do_not_overflow():
    heart = np.asarray(read_voice_file(VOICES / "af_heart.pt"))
    bella = np.asarray(read_voice_file(VOICES / "af_bella.pt"))
    got = np.asarray(load_voice({"af_heart": 1e308, "af_bella": 9e307}, folder=VOICES))
    np.testing.assert_allclose(got, heart * (10 / 19) + bella * (9 / 19), atol=1e-6)
