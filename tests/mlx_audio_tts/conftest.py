"""Fixtures the TTS tests share."""

import shutil
from pathlib import Path

import pytest

KOKORO_FIX = Path(__file__).parent.parent / "fixtures" / "kokoro"


@pytest.fixture(scope="module")
def kokoro_folder(tmp_path_factory) -> Path:
    """The reduced Kokoro in hexgrad's layout: config.json, kokoro-v1_0.pth, voices/*.pt."""
    folder = tmp_path_factory.mktemp("kokoro")
    shutil.copy(KOKORO_FIX / "kokoro_reduced_config.json", folder / "config.json")
    shutil.copy(KOKORO_FIX / "kokoro_reduced.pth", folder / "kokoro-v1_0.pth")
    shutil.copytree(KOKORO_FIX / "voices", folder / "voices")
    return folder
