"""SNAC against the official snac 1.2.1, through fixtures written by tools/parity/snac.py
(a reduced config: every code path, small widths), plus loading in both layouts, from a
folder and the Hub, streaming, errors and the fast convolution paths. No torch here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mlx_audio_io import dac
from mlx_audio_io.torchfile import load_torch_file

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_audio_tts.codecs.snac import (
    SNAC,
    ModelArgs,
    PositionalNoise,
    StreamingDecoder,
    load_model,
    save_model,
)
from mlx_audio_tts.codecs.snac.load import build_model

FIX = Path(__file__).parent.parent / "fixtures" / "snac"
TOL = 1e-4


def rel_error(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-12))


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIX / "snac_reduced_io.npz"))


@pytest.fixture(scope="module")
def model():
    return load_model(FIX)  # config.json + pytorch_model.bin with weight_g/weight_v names


def _codes(ref) -> list[mx.array]:
    return [mx.array(ref[f"codes{i}"]) for i in range(3)]


def _params(m) -> dict:
    return {k: np.array(v) for k, v in tree_flatten(m.parameters())}


def _same_params(a, b) -> bool:
    pa, pb = _params(a), _params(b)
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_encode_matches_the_official_model(model, ref):
    x = mx.array(ref["audio_in"])[None, :, None]
    pad = -x.shape[1] % (model.config.hop_length * model.config.vq_strides[0])
    latent = model.encoder(mx.pad(x, [(0, 0), (0, pad), (0, 0)]))[0]
    assert rel_error(latent, ref["latent"]) <= TOL
    codes = model.encode(ref["audio_in"])  # numpy in, 1-D
    for i, c in enumerate(codes):
        np.testing.assert_array_equal(np.array(c), ref[f"codes{i}"])


def test_decode_matches_the_official_model_with_its_noise(model, ref):
    noise = [mx.array(ref[f"noise{i}"]) for i in range(2)]
    audio = model.decode(_codes(ref), noise=noise)
    assert audio.shape == (ref["audio_out"].size, 1)
    assert rel_error(audio[:, 0], ref["audio_out"]) <= TOL
    # batched codes give batched audio, equal per item
    batched = model.decode([c[None] for c in _codes(ref)], noise=noise)
    assert batched.shape == (1, ref["audio_out"].size, 1)
    assert rel_error(batched[0, :, 0], ref["audio_out"]) <= TOL


def test_noise_is_drawn_reproducibly_from_a_key(model, ref):
    codes = _codes(ref)
    a = model.decode(codes, key=mx.random.key(3))
    b = model.decode(codes, key=mx.random.key(3))
    c = model.decode(codes, add_noise=False)
    assert np.array_equal(np.array(a), np.array(b))
    assert not np.allclose(np.array(a), np.array(c))


def _torch_state() -> dict:
    return load_torch_file(FIX / "pytorch_model.bin")


def test_both_torch_names_and_the_mlx_layout_load_alike(model, tmp_path):
    state = _torch_state()
    assert any(k.endswith(".weight_g") for k in state)
    renamed = {k.replace(".weight_g", ".parametrizations.weight.original0")
                .replace(".weight_v", ".parametrizations.weight.original1"): v
               for k, v in state.items()}  # fmt: skip
    cfg = json.loads((FIX / "config.json").read_text())
    assert _same_params(build_model(cfg, renamed, torch_layout=True), model)
    # MLX layout (mlx-community/snac_24khz's): .layers.N names, kernel axis in the middle
    folder = save_model(model, tmp_path / "mlx")
    saved = mx.load(str(folder / "model.safetensors"))
    up = "decoder.model.layers.2.block.layers.1.weight_v"  # first transposed conv
    assert saved[up].shape == (32, 8, 16)  # [in, kernel, out]
    assert saved["decoder.model.layers.2.block.layers.0.alpha"].shape == (1, 32, 1)
    assert saved["encoder.block.layers.0.weight_v"].shape == (4, 7, 1)  # [out, kernel, in]
    assert _same_params(load_model(folder), model)


def test_unknown_config_keys_are_kept_and_ignored(model, tmp_path):
    folder = save_model(model, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "future_option": [1, 2]}))
    loaded = load_model(folder)
    assert loaded.config.extra == {"future_option": [1, 2]}
    assert _same_params(loaded, model)


def test_loads_by_repo_id_through_the_hub(model, hub_server, hub_env, tmp_path):
    torch_repo = tmp_path / "hubertsiuzdak"
    torch_repo.mkdir()
    for name in ("config.json", "pytorch_model.bin"):
        shutil.copy(FIX / name, torch_repo / name)
    hub_server.add_repo("hubertsiuzdak/snac_24khz", torch_repo)
    hub_server.add_repo("mlx-community/snac_24khz", save_model(model, tmp_path / "mlx"))
    assert _same_params(load_model("hubertsiuzdak/snac_24khz"), model)
    assert _same_params(load_model("mlx-community/snac_24khz"), model)


def _chunks(codes, per_frame, frames_per_chunk):
    n = codes[0].shape[-1] // per_frame[0]
    return [
        [c[..., i * p * frames_per_chunk : (i + 1) * p * frames_per_chunk]
         for c, p in zip(codes, per_frame, strict=True)]
        for i in range(-(-n // frames_per_chunk))
    ]  # fmt: skip


@pytest.mark.parametrize("frames_per_chunk", [1, 2, 3, 5, 100])
def test_streaming_decode_equals_one_shot(model, ref, frames_per_chunk):
    codes = _codes(ref)
    whole = np.array(model.decode(codes, add_noise=False))
    chunks = _chunks(codes, model.codes_per_frame(), frames_per_chunk)
    parts = list(model.decode_stream(chunks, add_noise=False))
    assert all(p.shape[0] % model.samples_per_frame == 0 for p in parts)
    streamed = np.concatenate([np.array(p) for p in parts])
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-6 * np.abs(whole).max())


@pytest.mark.parametrize("frames_per_chunk", [1, 2, 3, 7])
def test_streaming_with_positional_noise_equals_one_shot(model, ref, frames_per_chunk):
    codes = _codes(ref)
    whole = np.array(model.decode(codes, noise=PositionalNoise(7)))
    assert not np.allclose(whole, np.array(model.decode(codes, add_noise=False)), atol=1e-3)
    chunks = _chunks(codes, model.codes_per_frame(), frames_per_chunk)
    streamed = np.concatenate(
        [np.array(p) for p in model.decode_stream(chunks, noise=PositionalNoise(7))]
    )
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-5 * np.abs(whole).max())


def test_positional_noise_is_normal_and_fixed_by_place():
    noise = PositionalNoise(123)
    a = np.array(noise.values(1, 2, 0, 200_000))
    assert abs(a.mean()) < 0.01 and abs(a.std() - 1) < 0.01 and np.isfinite(a).all()
    assert not np.allclose(a[0], a[1])  # batch rows differ
    np.testing.assert_array_equal(np.array(noise.values(1, 2, 5000, 100)), a[:, 5000:5100])
    assert not np.allclose(np.array(noise.values(0, 2, 0, 100)), a[:, :100])  # blocks differ
    assert np.isfinite(np.array(PositionalNoise(2**40).values(5, 1, 2**33, 10))).all()
    assert not np.allclose(np.array(PositionalNoise(124).values(1, 2, 0, 100)), a[:, :100])
    assert isinstance(PositionalNoise().seed, int)
    with pytest.raises(ValueError, match="seed must be an int"):
        PositionalNoise("1")


def test_streaming_batched_and_latency(model, ref):
    codes = [c[None] for c in _codes(ref)]
    stream = StreamingDecoder(model, add_noise=False)
    reach = model.decoder_reach()
    out = []
    for i, chunk in enumerate(_chunks(codes, model.codes_per_frame(), 1)):
        got = stream.push(chunk)
        # a frame's audio comes out once the `reach` frames after it have arrived
        assert got.shape == (1, (model.samples_per_frame if i >= reach else 0), 1)
        out.append(got)
    out.append(stream.flush())
    whole = model.decode(codes, add_noise=False)
    np.testing.assert_allclose(np.concatenate(out, axis=1), np.array(whole), atol=1e-6)


def test_too_little_context_is_not_exact(model, ref):
    codes = _codes(ref)
    whole = np.array(model.decode(codes, add_noise=False))
    chunks = _chunks(codes, model.codes_per_frame(), 2)
    parts = model.decode_stream(chunks, add_noise=False, context_frames=0, lookahead_frames=0)
    assert not np.allclose(np.concatenate([np.array(p) for p in parts]), whole, atol=1e-6)


def test_bad_codes_are_explained(model, ref):
    codes = _codes(ref)
    with pytest.raises(ValueError, match=r"codes\[1\] must be in \[0, 64\)"):
        model.decode([codes[0], codes[1] + 64, codes[2]])
    with pytest.raises(ValueError, match=r"codes\[0\] must be in \[0, 64\)"):
        model.decode([codes[0] - 100, codes[1], codes[2]])
    with pytest.raises(ValueError, match=r"lengths in the ratio \[1, 2, 4\]"):
        model.decode([codes[0], codes[1][:-1], codes[2]])
    with pytest.raises(ValueError, match="list of 3 arrays"):
        model.decode(codes[:2])
    with pytest.raises(ValueError, match="integers"):
        model.decode([c.astype(mx.float32) for c in codes])
    with pytest.raises(ValueError, match=r"all be \[n\] or all \[batch, n\]"):
        model.decode([codes[0][None], codes[1], codes[2]])
    with pytest.raises(ValueError, match="not be empty"):
        model.decode([c[:0] for c in codes])
    stream = StreamingDecoder(model)
    stream.push([codes[0][:1], codes[1][:2], codes[2][:4]])
    with pytest.raises(ValueError, match="every chunk must be batched, or none"):
        stream.push([codes[0][None, :1], codes[1][None, :2], codes[2][None, :4]])
    with pytest.raises(ValueError, match="noise must hold 2 arrays"):
        model.decode(codes, noise=[mx.zeros((10,))])
    with pytest.raises(ValueError, match="noise must be a PositionalNoise or a list"):
        model.decode(codes, noise=7)
    with pytest.raises(ValueError, match="noise must be a PositionalNoise or None"):
        StreamingDecoder(model, noise=[mx.zeros((10,))])
    with pytest.raises(ValueError, match="audio must be mono"):
        model.encode(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="finite"):
        model.encode(np.full(100, np.nan, np.float32))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoder_rates": "2,4"}, "encoder_rates must be a list"),
        ({"attn_window_size": 32}, "attn_window_size must be null"),
        ({"decoder_dim": 30}, "decoder_dim must be divisible"),
        ({"decoder_rates": [4, 4]}, "must equal that of encoder_rates"),
        ({"codebook_size": 0}, r"codebook_size must be an int in \[2, 65536\]"),
        ({"noise": "yes"}, "noise must be true or false"),
        ({"vq_strides": []}, "vq_strides must be a list of 1 to 8 ints"),
    ],
)
def test_bad_configs_name_the_file_and_field(tmp_path, change, message):
    folder = tmp_path / "m"
    folder.mkdir()
    cfg = {**json.loads((FIX / "config.json").read_text()), **change}
    (folder / "config.json").write_text(json.dumps(cfg))
    shutil.copy(FIX / "pytorch_model.bin", folder)
    with pytest.raises(ValueError, match=message) as info:
        load_model(folder)
    assert "config.json" in str(info.value)


def test_bad_weights_name_the_file(model, tmp_path):
    folder = save_model(model, tmp_path / "m")
    weights = dict(mx.load(str(folder / "model.safetensors")))
    weights.pop("decoder.model.layers.0.bias")
    mx.save_safetensors(str(folder / "model.safetensors"), weights)
    with pytest.raises(ValueError, match="model.safetensors"):
        load_model(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin"):
        load_model(folder)


def test_official_config_builds_with_its_parameter_count():
    m = SNAC(ModelArgs())
    assert sum(v.size for _, v in tree_flatten(m.parameters())) == 19_842_914
    assert (m.samples_per_frame, m.codes_per_frame(), m.decoder_reach()) == (2048, [1, 2, 4], 3)


def test_fast_paths_are_used(model, ref, monkeypatch):
    """On the CPU no convolution goes to MLX's slow transposed, dilated or grouped kernels."""
    calls = []
    conv1d = mx.conv1d

    def no_transpose(*args, **kwargs):
        raise AssertionError("mx.conv_transpose1d called on the CPU")

    def checked_conv1d(x, w, stride=1, padding=0, dilation=1, groups=1, **kwargs):
        calls.append((dilation, groups))
        return conv1d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)

    monkeypatch.setattr(mx, "conv_transpose1d", no_transpose)
    monkeypatch.setattr(mx, "conv1d", checked_conv1d)
    model.decode(_codes(ref), add_noise=False)
    model.encode(ref["audio_in"])
    assert all(c == (1, 1) for c in calls), calls


@pytest.mark.parametrize("dilation", [1, 3, 9])
def test_dac_blocks_match_plain_mlx(dilation):
    mx.random.seed(dilation)
    x = mx.random.normal((2, 50, 6))
    dw = dac.WNConv1d(6, 6, 7, padding=3 * dilation, dilation=dilation, groups=6)
    dw.weight_g = dw.weight_g * 1.7
    w = dw.weight_g * dw.weight_v / mx.sqrt(mx.sum(dw.weight_v**2, axis=(1, 2), keepdims=True))
    want = mx.conv1d(x, w, padding=3 * dilation, dilation=dilation, groups=6) + dw.bias
    np.testing.assert_allclose(np.array(dw(x)), np.array(want), atol=1e-5)
    conv = dac.WNConv1d(6, 5, 7, padding=3 * dilation, dilation=dilation)
    w = (
        conv.weight_g
        * conv.weight_v
        / mx.sqrt(mx.sum(conv.weight_v**2, axis=(1, 2), keepdims=True))
    )
    want = mx.conv1d(x, w, padding=3 * dilation, dilation=dilation) + conv.bias
    np.testing.assert_allclose(np.array(conv(x)), np.array(want), atol=1e-5)


@pytest.mark.parametrize("stride", [2, 3, 8])
def test_transposed_block_matches_plain_mlx(stride):
    mx.random.seed(stride)
    x = mx.random.normal((1, 9, 6))
    up = dac.WNConvTranspose1d(6, 4, 2 * stride, stride=stride, padding=-(-stride // 2),
                               output_padding=stride % 2)  # fmt: skip
    up.weight_g = up.weight_g * 0.6
    v = up.weight_v  # [in, kernel, out], normed per input channel as in PyTorch
    w = up.weight_g * v / mx.sqrt(mx.sum(v**2, axis=(1, 2), keepdims=True))
    want = mx.conv_transpose1d(x, w.swapaxes(0, 2), stride=stride, padding=-(-stride // 2),
                               output_padding=stride % 2) + up.bias  # fmt: skip
    got = up(x)
    assert got.shape == (1, 9 * stride, 4)
    np.testing.assert_allclose(np.array(got), np.array(want), atol=1e-5)


def test_torch_names_map_onto_the_blocks():
    state = {
        "decoder.model.1.block.2.block.0.alpha": np.ones((1, 3, 1)),
        "decoder.model.1.block.1.parametrizations.weight.original1": np.zeros((4, 5, 6)),
        "decoder.model.1.block.1.parametrizations.weight.original0": np.zeros((4, 1, 1)),
    }
    out = dac.torch_to_mlx_layout(state)
    assert out["decoder.model.layers.1.block.layers.2.block.layers.0.alpha"].shape == (1, 3, 1)
    assert out["decoder.model.layers.1.block.layers.1.weight_v"].shape == (4, 6, 5)
    assert out["decoder.model.layers.1.block.layers.1.weight_g"].shape == (4, 1, 1)


def test_huge_configs_are_refused_before_building():
    with pytest.raises(ValueError, match="more than the 1,000,000,000 allowed"):
        ModelArgs(encoder_dim=1024, decoder_dim=16384)
    assert 19_000_000 < ModelArgs().approx_parameters() < 20_500_000
