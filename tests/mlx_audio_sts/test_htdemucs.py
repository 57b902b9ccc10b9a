"""HTDemucs against the official demucs, through fixtures written by tools/parity/htdemucs.py
(reduced config, random perturbed weights saved as real demucs .th packages), and every way
of loading, running and writing a model. No torch here."""

from __future__ import annotations

import json
import pickle
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import mlx_audio_io as aio
from mlx_audio_io.hub import file_sha256
from mlx_audio_io.torchfile import load_torch_file

import mlx.core as mx
import numpy as np
import pytest
from mlx_audio_sts import BagOfModels, HTDemucs, ModelArgs, apply_model, from_pretrained, separate
from mlx_audio_sts.cli import main as cli
from mlx_audio_sts.models.htdemucs import convert, save_model
from mlx_audio_sts.models.htdemucs.pretrained import load_local
from parity_io import load_stages, rel_error

FIX = Path(__file__).parent.parent / "fixtures" / "parity"
TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    stages, data = load_stages(FIX / "htdemucs_reduced_io")
    return stages | {
        "segment": data["segment"],
        "mix": data["mix"],
    }


@pytest.fixture(scope="module")
def model():
    return convert.load_th(FIX / "htdemucs_reduced.th")


@pytest.fixture(scope="module")
def bag_models(model):
    return [model] + [convert.load_th(FIX / f"htdemucs_reduced_{i}.th") for i in (1, 2)]


def _cf(a):
    a = np.array(a)
    return a.transpose(0, 3, 2, 1) if a.ndim == 4 else a.transpose(0, 2, 1)


def test_stages_match_demucs(model, ref):
    got = {}
    out = model(mx.array(ref["segment"]), capture=got)
    assert rel_error(_cf(got["spec"]), ref["spectrogram (CaC input)"]) < TOL
    assert rel_error(_cf(got["transformer"][0]), ref["transformer, frequency tokens"]) < TOL
    assert rel_error(_cf(got["transformer"][1]), ref["transformer, time tokens"]) < TOL
    assert rel_error(_cf(got["freq"]), ref["frequency branch output"]) < TOL
    assert rel_error(_cf(got["time"]), ref["time branch output"]) < TOL
    assert rel_error(out, ref["model output (stems)"]) < TOL


def test_apply_model_matches_demucs(model, bag_models, ref):
    mix = ref["mix"]
    assert (
        rel_error(apply_model(model, mix, shifts=0), ref["apply_model split, overlap 0.25"]) < TOL
    )
    # demucs draws shifts from Python's random after random.seed(7): the same offsets here
    assert (
        rel_error(apply_model(model, mix, shifts=2, seed=7), ref["apply_model 2 shifts (seeded)"])
        < TOL
    )
    weights = [[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.5, 1.0], [0.0, 0.0, 1.0, 0.5]]
    bag = BagOfModels(bag_models, weights)
    assert (
        rel_error(apply_model(bag, mix, shifts=0), ref["bag of 3 models, per-source weights"]) < TOL
    )


def test_apply_model_options(model, ref):
    mix = ref["mix"]
    one = np.array(apply_model(model, mix[..., :3000], shifts=0, split=False))
    assert one.shape == (1, 4, 2, 3000)
    seg = np.array(apply_model(model, mix, shifts=0, segment=0.25))
    assert seg.shape == (1, 4, 2, 9000) and np.isfinite(seg).all()
    a = apply_model(model, mix, shifts=1, seed=3)
    b = apply_model(model, mix, shifts=1, seed=3)
    assert np.array_equal(np.array(a), np.array(b))
    calls = []
    apply_model(model, mix, shifts=0, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1][0] == calls[-1][1] == len(calls)
    with pytest.raises(ValueError, match="segment must be"):
        apply_model(model, mix, segment=1.0)
    with pytest.raises(ValueError, match="overlap"):
        apply_model(model, mix, overlap=1.0)
    with pytest.raises(ValueError, match=r"\[batch, channels, samples\]"):
        apply_model(model, mix[0])
    with pytest.raises(ValueError, match="at most 4000 samples"):
        model(mx.zeros((1, 2, 4001)))


def test_short_input_is_padded_like_demucs(model, ref):
    # demucs pads a short input to the training length and trims the output
    full = np.array(model(mx.array(ref["segment"])))
    short = ref["segment"][..., :1000]
    padded = np.pad(short, [(0, 0), (0, 0), (0, 3000)])
    assert rel_error(model(mx.array(short)), np.array(model(mx.array(padded)))[..., :1000]) < 1e-6
    assert full.shape[-1] == 4000


def test_bag_validation(model):
    with pytest.raises(ValueError, match="at least one"):
        BagOfModels([])
    with pytest.raises(ValueError, match="weights must be"):
        BagOfModels([model], [[1.0, 2.0]])


def _demucs_safetensors(th: Path, out: Path) -> Path:
    """demucs' Hub form of a .th: torch-layout tensors, class and kwargs as JSON metadata."""
    pkg = load_torch_file(th, globals_as_refs=True)
    kwargs = dict(pkg["kwargs"])
    seg = kwargs["segment"]
    kwargs["segment"] = {
        "_type": "fraction",
        "numerator": seg.numerator,
        "denominator": seg.denominator,
    }
    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(kwargs)}
    state = {k: mx.array(v) for k, v in pkg["state"].items()}
    mx.save_safetensors(str(out), state, metadata=meta)
    return out


def _out(model, ref):
    return np.array(model(mx.array(ref["segment"])))


def test_every_checkpoint_form_loads_the_same(model, ref, tmp_path):
    want = _out(model, ref)
    st = _demucs_safetensors(FIX / "htdemucs_reduced.th", tmp_path / "955717e8.safetensors")
    assert np.array_equal(_out(load_local(st), ref), want)
    # our folder form, written by the converter, loads back bit for bit
    folder = convert.save([("955717e8", model)], tmp_path / "ours", name="htdemucs")
    assert np.array_equal(_out(load_local(folder), ref), want)
    assert np.array_equal(_out(HTDemucs.from_pretrained(folder), ref), want)
    # a demucs repo folder: bag yaml + {sig}-{sha256[:8]}.th, checksum verified
    repo = tmp_path / "repo"
    repo.mkdir()
    sha = file_sha256(FIX / "htdemucs_reduced.th")[:8]
    shutil.copy(FIX / "htdemucs_reduced.th", repo / f"955717e8-{sha}.th")
    (repo / "htdemucs.yaml").write_text("models: ['955717e8']\n")
    assert np.array_equal(_out(load_local(repo), ref), want)
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(FIX / "htdemucs_reduced.th", bad / "955717e8-00000000.th")
    with pytest.raises(ValueError, match="955717e8-00000000.th"):
        load_local(bad / "955717e8-00000000.th")


def test_bag_yaml_with_weights(bag_models, ref, tmp_path):
    for i, name in enumerate(["htdemucs_reduced.th", "htdemucs_reduced_1.th"]):
        shutil.copy(FIX / name, tmp_path / f"sig{i}.th")
    (tmp_path / "mybag.yaml").write_text(
        "models: ['sig0', 'sig1']\nweights: [\n  [1., 0., 0., 1.],\n  [0., 1., 1., 1.],\n]\n"
    )
    bag = load_local(tmp_path)
    assert isinstance(bag, BagOfModels) and len(bag) == 2
    assert bag.weights == [[1, 0, 0, 1], [0, 1, 1, 1]]
    want = BagOfModels(bag_models[:2], [[1, 0, 0, 1], [0, 1, 1, 1]])
    got = apply_model(bag, ref["mix"], shifts=0)
    assert np.allclose(np.array(got), np.array(apply_model(want, ref["mix"], shifts=0)))
    folder = convert.save(
        [(m.signature, m) for m in bag.models], tmp_path / "out", weights=bag.weights
    )
    again = load_local(folder)
    assert isinstance(again, BagOfModels) and again.weights == bag.weights


def test_from_pretrained_by_name_through_the_hub(model, ref, hub_server, hub_env, tmp_path):
    folder = tmp_path / "HTDemucs"
    folder.mkdir()
    _demucs_safetensors(FIX / "htdemucs_reduced.th", folder / "955717e8.safetensors")
    (folder / "htdemucs.yaml").write_text("models: ['955717e8']\n")
    hub_server.add_repo("adefossez/HTDemucs", folder)
    loaded = HTDemucs.from_pretrained("htdemucs")
    assert isinstance(loaded, HTDemucs)
    assert np.array_equal(_out(loaded, ref), _out(model, ref))
    ours = convert.save([("955717e8", model)], tmp_path / "mlx")
    hub_server.add_repo("someone/htdemucs-mlx", ours)
    assert np.array_equal(_out(from_pretrained("someone/htdemucs-mlx"), ref), _out(model, ref))


def test_loading_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="unknown model 'nope'"):
        from_pretrained("nope")
    with pytest.raises(FileNotFoundError, match="no HTDemucs model found"):
        load_local(tmp_path)
    cfg = json.loads(
        json.dumps(
            load_torch_file(FIX / "htdemucs_reduced.th", globals_as_refs=True)["kwargs"],
            default=str,
        )
    )  # noqa: E501
    cfg["channels"] = 16
    state = load_torch_file(FIX / "htdemucs_reduced.th", globals_as_refs=True)["state"]
    with pytest.raises(ValueError, match="does not fit"):
        convert.build(cfg, state, torch_layout=True, where="x")
    (tmp_path / "config.json").write_text('{"model_type": "kokoro"}')
    with pytest.raises(ValueError, match="expected 'htdemucs'"):
        load_local(tmp_path)
    not_demucs = tmp_path / "w.safetensors"
    mx.save_safetensors(str(not_demucs), {"a": mx.zeros(2)})
    with pytest.raises(ValueError, match="no demucs metadata"):
        load_local(not_demucs)


def test_separate(model, ref, tmp_path):
    mix = ref["mix"][0].T  # [frames, channels]
    stems = separate(mix, model, shifts=0, sample_rate=8000)
    assert list(stems) == ["drums", "bass", "other", "vocals"]
    assert stems["vocals"].shape == (9000, 2) and stems["vocals"].dtype == mx.float32
    # demucs.api: standardise by the mono mix, separate, undo
    m = mix.mean(axis=1)
    mean, std = m.mean(), m.std(ddof=1) + 1e-8
    want = np.array(apply_model(model, ((mix.T - mean) / std)[None], shifts=0))[0] * std + mean
    assert rel_error(stems["drums"], want[0].T) < 1e-5
    raw = separate(mix, model, shifts=0, sample_rate=8000, normalize=False, layout="channels_first")
    assert rel_error(raw["bass"], np.array(apply_model(model, mix.T[None], shifts=0))[0, 1]) < 1e-6
    path = tmp_path / "song.wav"
    aio.save(path, mix, 8000, clip=False)
    from_file = separate(path, model, shifts=0)
    assert rel_error(from_file["other"], stems["other"]) < 1e-5
    mono = separate(mix[:, 0], model, shifts=0, sample_rate=8000)
    assert mono["vocals"].shape == (9000, 2)
    resampled = separate(mix[:4000], model, shifts=0, sample_rate=16000)
    assert resampled["vocals"].shape == (2000, 2)
    with pytest.raises(ValueError, match="empty"):
        separate(np.zeros((0, 2), np.float32), model, sample_rate=8000)
    with pytest.raises(ValueError, match="NaN"):
        separate(np.full((100, 2), np.nan, np.float32), model, sample_rate=8000)
    with pytest.raises(ValueError, match="sample_rate is required"):
        separate(mix, model)
    with pytest.raises(ValueError, match="shifts"):
        separate(mix, model, shifts=-1, sample_rate=8000)


def test_cli_separate_and_convert(model, ref, tmp_path, capsys):
    folder = convert.save([("955717e8", model)], tmp_path / "model")
    song = tmp_path / "song.wav"
    aio.save(song, ref["mix"][0].T, 8000)
    out = tmp_path / "sep"
    args = ["separate", str(song), "--model-path", str(folder), "-o", str(out), "--shifts", "0"]
    assert cli(args + ["--float32"]) == 0
    stems = sorted(p.name for p in (out / "htdemucs" / "song").iterdir())
    assert stems == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    assert "windows" in capsys.readouterr().err
    vocals = np.array(aio.load(out / "htdemucs" / "song" / "vocals.wav")[0])
    want = np.array(separate(song, model, shifts=0)["vocals"])
    want = want / max(1.01 * np.abs(want).max(), 1.0)  # --clip-mode rescale
    assert rel_error(vocals, want) < 1e-5
    assert cli(args + ["--two-stems", "vocals", "--flac", "-n", "two", "-q"]) == 0
    two = sorted(p.name for p in (out / "two" / "song").iterdir())
    assert two == ["no_vocals.flac", "vocals.flac"]
    assert cli(args + ["--mp3", "--mp3-bitrate", "64", "-n", "mp3", "-q"]) == 0
    assert aio.info(out / "mp3" / "song" / "drums.mp3").sample_rate == 8000
    assert cli(["separate", str(tmp_path / "missing.wav"), "--model-path", str(folder)]) == 1
    assert "file not found" in capsys.readouterr().err
    dst = tmp_path / "converted"
    assert cli(["convert", str(FIX / "htdemucs_reduced.th"), str(dst)]) == 0
    assert np.array_equal(_out(load_local(dst), ref), _out(model, ref))


def test_shift_rng_follows_demucs(model, ref):
    # the transformer draws randrange(1) per call, as demucs does, so a seed gives demucs' offsets
    rng = random.Random(5)
    model(mx.array(ref["segment"]), rng)
    probe = random.Random(5)
    probe.randrange(1)
    assert rng.random() == probe.random()


# save_model (issue 15): the public way to write a model or a bag as our folder
def test_save_model_round_trips(model, bag_models, ref, tmp_path):
    one = load_local(FIX / "htdemucs_reduced.th")  # its signature: the file's stem
    folder = save_model(one, tmp_path / "one", name="htdemucs")
    loaded = from_pretrained(folder)
    assert isinstance(loaded, HTDemucs) and loaded.signature == "htdemucs_reduced"
    assert np.array_equal(_out(loaded, ref), _out(model, ref))
    assert json.loads((folder / "config.json").read_text())["name"] == "htdemucs"
    # a model built from its arguments (no signature) is saved as model0
    fresh = HTDemucs(ModelArgs.from_dict(model.args.to_dict()))
    mx.eval(fresh.parameters())
    again = load_local(save_model(fresh, tmp_path / "fresh"))
    assert again.signature == "model0" and np.array_equal(_out(again, ref), _out(fresh, ref))
    # a bag keeps its per-source weights and its shorter segment
    weights = [[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.5, 1.0]]
    bag = BagOfModels(bag_models[:2], weights, segment=0.25)
    back = load_local(save_model(bag, tmp_path / "bag"))
    assert isinstance(back, BagOfModels) and back.weights == weights and back.segment == 0.25
    assert np.array_equal(
        np.array(apply_model(back, ref["mix"], shifts=0)),
        np.array(apply_model(bag, ref["mix"], shifts=0)),
    )
    with pytest.raises(ValueError, match="model must be an HTDemucs or a BagOfModels, got str"):
        save_model("htdemucs", tmp_path / "x")


# Hardening (issue 15): malformed configs, packages and files raise ValueError naming the file
_KWARGS = load_torch_file(FIX / "htdemucs_reduced.th", globals_as_refs=True)["kwargs"]
BAD_FIELDS = {
    "channels a string": ({"channels": "8"}, "channels must be an int in"),
    "depth huge": ({"depth": 100}, r"depth must be an int in \[1, 16\], got 100"),
    "growth NaN": ({"growth": float("nan")}, "growth must be a number in"),
    "cac a string": ({"cac": "yes"}, "cac must be true or false"),
    "sources": ({"sources": ["drums", 1]}, r"sources\[1\] must be a source name"),
    "segment a list": ({"segment": [1]}, "segment must be seconds"),
    "segment zero": ({"segment": "0/1"}, r"segment must be in \(0, 3600\]"),
    "heads": ({"t_heads": 3}, "t_heads must divide the transformer's width"),
    "too big": ({"channels": 4096, "bottom_channels": 0}, "parameters, more than the"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_bad_config_fields_name_the_file(case, model, tmp_path):
    change, message = BAD_FIELDS[case]
    folder = save_model(model, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["models"][0]["config"].update(change)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message) as e:
        load_local(folder)
    assert f"loading failed for '{folder / 'config.json'}': bad HTDemucs config: " in str(e.value)


def test_segment_bomb_is_refused(model, tmp_path):
    """Fraction("1e999999999") computes 10**999999999: the load used to hang (a child process
    with a time limit here)."""
    folder = save_model(model, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["models"][0]["config"]["segment"] = "1e999999999"
    (folder / "config.json").write_text(json.dumps(config))
    child = (
        "import sys\nfrom mlx_audio_sts.models.htdemucs.pretrained import load_local\n"
        "try:\n    load_local(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n"
    )
    run = subprocess.run([sys.executable, "-c", child, str(folder)], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "bad HTDemucs config: segment must be seconds" in run.stdout


BAD_FOLDERS = {
    "not JSON": ("{models: ", "not valid JSON"),
    "a list": ("[]", "expected a JSON object, got a list"),
    "models": ('{"model_type": "htdemucs", "models": {"a": 1}}', "'models' must be a list"),
    "file outside": (
        '{"model_type": "htdemucs", "models": [{"file": "../x.safetensors", "config": {}}]}',
        "must be a .safetensors file in the same folder",
    ),
    "weights": ("weights", r"weights\[0\]\[1\] must be a number in"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_bad_folders_name_the_file(case, bag_models, tmp_path):
    text, message = BAD_FOLDERS[case]
    folder = save_model(BagOfModels(bag_models[:2]), tmp_path / "m")
    if text == "weights":
        config = json.loads((folder / "config.json").read_text())
        config["weights"] = [[1, "x", 1, 1], [1, 1, 1, 1]]
        text = json.dumps(config)
    (folder / "config.json").write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        from_pretrained(folder)
    assert f"loading failed for '{folder / 'config.json'}': " in str(e.value)


def _package(tmp_path, **changes) -> Path:
    """A demucs .th package: the fixture's contents with some entries replaced."""
    package = load_torch_file(FIX / "htdemucs_reduced.th", globals_as_refs=True)
    package.update(changes)
    package["klass"] = "KLASS"
    package["state"] = changes.get("state", {})  # the weights are not needed to fail
    pkl = pickle.dumps(package, protocol=2).replace(
        b"X\x05\x00\x00\x00KLASS", b"cdemucs.htdemucs\nHTDemucs\n"
    )
    path = tmp_path / "pkg.th"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/data.pkl", pkl)
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"state": [1, 2]}, "the state is not a dict of named tensors"),
        ({"state": {"w": "x"}}, "the state is not a dict of named tensors"),
        ({"kwargs": [1]}, "kwargs is a list, not a dict"),
        ({"kwargs": {**_KWARGS, "depth": "3"}}, "bad HTDemucs config: depth must be an int"),
        ({"args": {"a": 1}}, "args is a dict"),
    ],
)
def test_malformed_th_packages_name_the_file(changes, message, tmp_path):
    path = _package(tmp_path, **changes)
    with pytest.raises(ValueError, match=message) as e:
        load_local(path)
    assert f"loading failed for '{path}'" in str(e.value)


def test_corrupt_demucs_safetensors_name_the_file(tmp_path):
    path = tmp_path / "955717e8.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}..")
    with pytest.raises(ValueError, match=f"loading failed for '{path}': not a readable"):
        load_local(path)
    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]"}
    for kwargs, message in [("{", "bad kwargs metadata"), ("[1]", "kwargs is not a JSON object"),
                            (json.dumps({"segment": {"_type": "fraction", "numerator": 1}}),
                             "segment must be seconds")]:  # fmt: skip
        mx.save_safetensors(str(path), {"a": mx.zeros(2)}, metadata={**meta, "kwargs": kwargs})
        with pytest.raises(ValueError, match=message):
            load_local(path)


def test_bag_yaml_signatures_stay_in_the_folder(tmp_path):
    (tmp_path / "bag.yaml").write_text("models: ['../../etc/passwd']\n")
    with pytest.raises(ValueError, match="a model signature must be a short name"):
        load_local(tmp_path / "bag.yaml")
