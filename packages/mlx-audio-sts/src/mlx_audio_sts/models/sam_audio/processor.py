"""SAM-Audio's inputs: audio (files or arrays) batched at 48 kHz mono, text prompts, and the
temporal anchors, laid out as the official ``SAMAudioProcessor`` lays them out."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import mlx_audio_io

import mlx.core as mx
import numpy as np

ANCHOR_IDS = {"<null>": 0, "+": 1, "-": 2, "<pad>": 3}

Anchor = tuple[str, float, float]


@dataclass
class Batch:
    """One batch of separation inputs.

    Attributes:
        audios: ``[batch, samples, 1]`` float32 at the model's rate, zero-padded to the longest.
        wav_sizes: ``[batch]`` samples of each audio before padding.
        sizes: ``[batch]`` codec frames of each audio (``ceil(samples / hop)``).
        descriptions: The text prompts, one per audio.
        audio_pad_mask: ``[batch, frames]`` bool, True on the frames of real audio.
        anchor_ids: ``[batch, 2 + anchors]`` int32: ``<null>``, ``<pad>``, then one ``+``/``-``
            per anchor (padded with ``<pad>``), as the reference builds them.
        anchor_alignment: ``[batch, frames]`` int32: which entry of ``anchor_ids`` each frame
            takes (0 = ``<null>``, 1 = ``<pad>`` past the audio).
        anchors: The anchors as given.
    """

    audios: mx.array
    wav_sizes: list[int]
    sizes: list[int]
    descriptions: list[str]
    audio_pad_mask: mx.array
    anchor_ids: mx.array
    anchor_alignment: mx.array
    anchors: list[list[Anchor]] | None = None


def _load(audio, sample_rate: int, index: int) -> np.ndarray:
    """One audio as float32 mono samples at ``sample_rate`` (channels averaged)."""
    if isinstance(audio, (str, os.PathLike)):
        wav, _ = mlx_audio_io.load(os.fspath(audio), sr=sample_rate, mono=True)
        return np.asarray(wav, np.float32).reshape(-1)
    wav = np.asarray(audio, np.float32)
    if wav.ndim == 3 and wav.shape[0] == 1:
        wav = wav[0]
    if wav.ndim == 1:
        return wav
    if wav.ndim != 2:
        raise ValueError(
            f"audios[{index}] must be a path, [samples], [channels, samples] or [1, 1, samples], "
            f"got shape {wav.shape}"
        )
    # the reference's layout is (channels, samples); a tall array is channels-last
    return (wav.mean(axis=0) if wav.shape[0] <= wav.shape[1] else wav.mean(axis=1)).astype(
        np.float32
    )


def _split_audios(audios) -> list:
    if isinstance(audios, (str, os.PathLike)):
        return [audios]
    if isinstance(audios, (mx.array, np.ndarray)):
        a = np.asarray(audios, np.float32)
        if a.ndim != 3:
            raise ValueError(f"audios as an array must be [batch, 1, samples], got shape {a.shape}")
        if a.shape[1] != 1 and a.shape[2] == 1:  # [batch, samples, 1]
            a = a.transpose(0, 2, 1)
        return [row.mean(axis=0) for row in a]
    if not isinstance(audios, Sequence) or len(audios) == 0:
        raise ValueError(f"audios must be a non-empty list of paths or arrays, got {audios!r}")
    return list(audios)


def frames_for(samples, hop: int) -> int:
    """Codec frames covering ``samples`` samples: ``ceil(samples / hop)``."""
    return math.ceil(samples / hop)


class SAMAudioProcessor:
    """Turns ``descriptions``, ``audios`` and ``anchors`` into a :class:`Batch`.

    Args:
        sample_rate: The codec's rate (48000).
        hop_length: Samples per codec frame (1920).
    """

    def __init__(self, sample_rate: int = 48_000, hop_length: int = 1920):
        self.sample_rate = sample_rate
        self.hop_length = hop_length

    @classmethod
    def from_pretrained(cls, name_or_path, *, revision: str | None = None) -> SAMAudioProcessor:
        """The processor of a model repo or folder (reads its ``config.json`` only)."""
        from mlx_audio_io.hub import read_config, resolve_model_path

        from .config import SAMAudioConfig

        folder = resolve_model_path(name_or_path, revision=revision, allow_patterns="config.json")
        codec = SAMAudioConfig.from_dict(read_config(folder / "config.json")).audio_codec
        return cls(codec.sample_rate, codec.hop_length)

    def __call__(
        self,
        descriptions: Sequence[str],
        audios,
        anchors: Sequence[Sequence[Anchor]] | None = None,
    ) -> Batch:
        """Builds the batch.

        Args:
            descriptions: One text prompt per audio (lowercase noun or verb phrases work best,
                e.g. ``"man speaking"``).
            audios: Paths (any format mlx_audio_io reads; resampled to 48 kHz and averaged
                to mono), 1-D/2-D arrays at 48 kHz, or one ``[batch, 1, samples]`` array.
            anchors: None, or per audio a list of ``(token, start_seconds, end_seconds)``
                with token ``"+"`` (the target sounds here) or ``"-"`` (it does not).

        Raises:
            ValueError: Mismatched lengths, bad anchors or bad audio shapes.
            FileNotFoundError: A path that does not exist.
        """
        wavs = [_load(a, self.sample_rate, i) for i, a in enumerate(_split_audios(audios))]
        if isinstance(descriptions, str) or len(descriptions) != len(wavs):
            raise ValueError(
                f"descriptions must be a list with one text per audio ({len(wavs)}), got "
                f"{descriptions!r}"
            )
        for i, d in enumerate(descriptions):
            if not isinstance(d, str):
                raise ValueError(f"descriptions[{i}] must be a str, got {d!r}")
        for i, w in enumerate(wavs):
            if w.size == 0:
                raise ValueError(f"audios[{i}] is empty")
            if not np.isfinite(w).all():
                raise ValueError(f"audios[{i}] has NaN or infinite samples")
        wav_sizes = [int(w.size) for w in wavs]
        padded = np.zeros((len(wavs), max(wav_sizes), 1), np.float32)
        for i, w in enumerate(wavs):
            padded[i, : w.size, 0] = w
        sizes = [frames_for(n, self.hop_length) for n in wav_sizes]
        mask = np.arange(max(sizes))[None] < np.array(sizes)[:, None]
        ids, align = self._anchors(anchors, mask, wav_sizes)
        return Batch(mx.array(padded), wav_sizes, sizes, list(descriptions), mx.array(mask),
                     mx.array(ids), mx.array(align), None if anchors is None else
                     [list(a) for a in anchors])  # fmt: skip

    def _anchors(self, anchors, mask: np.ndarray, wav_sizes: list[int]):
        batch, frames = mask.shape
        align = np.where(mask, 0, 1).astype(np.int32)
        if anchors is None:
            ids = np.tile(
                np.array([[ANCHOR_IDS["<null>"], ANCHOR_IDS["<pad>"]]], np.int32), (batch, 1)
            )
            return ids, align
        if isinstance(anchors, str) or len(anchors) != batch:
            raise ValueError(f"anchors must have one list per audio ({batch}), got {anchors!r}")
        rows = []
        for i, items in enumerate(anchors):
            current = [ANCHOR_IDS["<null>"], ANCHOR_IDS["<pad>"]]
            for anchor in items:
                token, start, end = self._check_anchor(anchor, i, wav_sizes[i])
                lo = frames_for(start * self.sample_rate, self.hop_length)
                hi = frames_for(end * self.sample_rate, self.hop_length)
                align[i, lo:hi] = len(current)
                current.append(ANCHOR_IDS[token])
            rows.append(current)
        ids = np.full((batch, max(len(r) for r in rows)), ANCHOR_IDS["<pad>"], np.int32)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        return ids, align

    def _check_anchor(self, anchor, i: int, samples: int) -> tuple[str, float, float]:
        if not isinstance(anchor, (tuple, list)) or len(anchor) != 3:
            raise ValueError(f"anchors[{i}] entries must be (token, start, end), got {anchor!r}")
        token, start, end = anchor
        if token not in ("+", "-"):
            raise ValueError(f"anchor token must be '+' or '-', got {token!r}")
        try:
            start, end = float(start), float(end)
        except (TypeError, ValueError) as e:
            raise ValueError(f"anchor times must be seconds, got {anchor!r}") from e
        duration = samples / self.sample_rate
        if not (0 <= start < end) or not math.isfinite(end):
            raise ValueError(f"anchor must have 0 <= start < end, got {anchor!r}")
        if start >= duration:
            raise ValueError(f"anchor {anchor!r} starts after audios[{i}] ends ({duration:.3f} s)")
        return token, start, end
