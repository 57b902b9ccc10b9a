"""Orpheus' token protocol (shared/notes/tts_models.md section 3, canopyai's decoder)."""

import warnings

import mlx_audio_io  # noqa: F401

import numpy as np
import pytest
from mlx_audio_tts.models.orpheus import protocol as p


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (int(rng.integers(0, 4096)), tuple(int(c) for c in rng.integers(0, 4096, 2)),
         tuple(int(c) for c in rng.integers(0, 4096, 4)))
        for _ in range(n)
    ]  # fmt: skip


def test_token_ids_and_levels():
    # slot s carries 128266 + s * 4096 + code; positions map to [t0], [t1, t4], [t2, t3, t5, t6]
    ids = p.frame_tokens(5, (6, 7), (8, 9, 10, 11))
    codes = [5, 6, 8, 9, 7, 10, 11]
    assert ids == [128266 + slot * 4096 + code for slot, code in enumerate(codes)]
    frames = _frames(9)
    tokens = [p.START_OF_AI, p.START_OF_SPEECH]
    for f in frames:
        tokens += p.frame_tokens(*f)
    assert p.frames_from_tokens(tokens + [p.END_OF_SPEECH]) == frames
    l0, l1, l2 = p.level_codes(frames)
    assert len(l0) == 9 and len(l1) == 18 and len(l2) == 36
    assert l1[:2] == list(frames[0][1]) and l2[4:8] == list(frames[1][2])


def test_end_of_speech_stops_and_partial_frames_are_dropped():
    frames = _frames(3, seed=1)
    tokens = [t for f in frames for t in p.frame_tokens(*f)]
    asm = p.FrameAssembler()
    assert asm.extend(tokens[:10] + [p.END_OF_SPEECH] + tokens[10:]) is True
    assert asm.frames == frames[:1] and asm.partial == 3 and asm.ended
    assert asm.push(tokens[0]) is True  # nothing after the end


def test_out_of_range_codes_are_dropped_without_shifting_slots():
    f0, f1 = _frames(2, seed=2)
    t0, t1 = p.frame_tokens(*f0), p.frame_tokens(*f1)
    # a token meant for slot 0 arriving at slot 3, text tokens, and a code past the codebook
    noise = [p.AUDIO_BASE + 100, 1234, p.AUDIO_BASE + 7 * 4096 + 5]
    tokens = t0[:3] + noise + t0[3:] + t1
    asm = p.FrameAssembler()
    asm.extend(tokens)
    assert asm.frames == [f0, f1] and asm.dropped == 2


def test_code_zero_is_kept():
    f = (0, (0, 0), (0, 0, 0, 0))
    assert p.frames_from_tokens(p.frame_tokens(*f) * 2) == [f, f]


def test_iter_frames_yields_each_frame_when_complete():
    frames = _frames(4, seed=3)
    tokens = [t for f in frames for t in p.frame_tokens(*f)] + [p.END_OF_SPEECH, 1, 2]
    seen = []

    def source():
        for i, t in enumerate(tokens):
            seen.append(i)
            yield t

    got = []
    for frame in p.iter_frames(source()):
        got.append((frame, len(seen)))
    assert [g[0] for g in got] == frames
    assert [g[1] for g in got] == [7, 14, 21, 28]  # yielded at each frame's 7th token
    assert len(seen) == 29  # stopped at the end of speech


def test_prompt_framing():
    def encode(s):
        return [128000] + [ord(c) for c in s]

    ids = p.prompt_ids(encode, "Hi <laugh>", "tara")
    assert ids[0] == p.START_OF_HUMAN and ids[1] == 128000
    assert bytes(ids[2:-4]).decode() == "tara: Hi <laugh>"
    assert ids[-4:] == [p.END_OF_TEXT, p.END_OF_HUMAN, p.START_OF_AI, p.START_OF_SPEECH]
    with pytest.warns(UserWarning, match="not one of Orpheus' trained voices.*tara, leah"):
        p.prompt_ids(encode, "Hi", "af_heart")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for v in p.VOICES:
            p.prompt_ids(encode, "Hi", v)
    for bad in ("", "   ", None):
        with pytest.raises(ValueError, match="text must be a non-empty string"):
            p.prompt_ids(encode, bad)
    with pytest.raises(ValueError, match="voice must be a non-empty string"):
        p.prompt_ids(encode, "Hi", "")
    with pytest.raises(ValueError, match="slot must be in"):
        p.audio_token(7, 0)
    with pytest.raises(ValueError, match="a frame has 1, 2 and 4 codes"):
        p.frame_tokens(1, (2,), (3, 4, 5, 6))
    assert p.DEFAULT_SAMPLING == {"temperature": 0.6, "top_p": 0.8, "repetition_penalty": 1.3,
                                  "max_tokens": 1200}  # fmt: skip
