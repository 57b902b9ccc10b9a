"""English text normalisation for TTS: numbers, ordinals, decimals, percentages, currencies,
dates, times and years become words before grapheme-to-phoneme conversion.

``normalize_text("On 2024-03-05 it cost $3.50 (12% off).")`` gives ``"On March fifth,
twenty twenty-four it cost three dollars and fifty cents (twelve percent off)."``.
British English (``british=True``) reads ``1/2/2024`` day first, puts "and" after hundreds
and says "pence". Other languages are left to espeak-ng, which reads numbers itself.
"""

from __future__ import annotations

import re

__all__ = ["normalize_text", "number_to_words", "ordinal_words", "year_words"]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()  # fmt: skip
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}  # fmt: skip
_MONTHS = ("January February March April May June July August September October November "
           "December").split()  # fmt: skip
_MONTH_RE = "|".join(_MONTHS + [m[:3] for m in _MONTHS] + ["Sept"])
# symbol: (major singular, major plural, minor singular, minor plural)
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}


def _below_thousand(n: int, british: bool) -> str:
    words = []
    if n >= 100:
        words.append(f"{_ONES[n // 100]} hundred")
        n %= 100
        if n and british:
            words.append("and")
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(_ONES[n])
    return " ".join(words)


def number_to_words(n: int, british: bool = False) -> str:
    """A whole number in English words: ``1234`` -> ``"one thousand two hundred
    thirty-four"`` (``british=True``: ``"one thousand two hundred and thirty-four"``)."""
    n = int(n)
    if n < 0:
        return "minus " + number_to_words(-n, british)
    if n >= 10**15:  # read digit by digit rather than invent scale names
        return " ".join(_ONES[int(d)] for d in str(n))
    words = []
    for value, name in _SCALES:
        if n >= value:
            words.append(f"{_below_thousand(n // value, british)} {name}")
            n %= value
    if n or not words:
        if words and british and n < 100:
            words.append("and")
        words.append(_below_thousand(n, british))
    return " ".join(words)


def ordinal_words(n: int, british: bool = False) -> str:
    """``21`` -> ``"twenty-first"``."""
    words = number_to_words(n, british)
    head, sep, last = words.rpartition("-" if "-" in words.split(" ")[-1] else " ")
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def year_words(n: int, british: bool = False) -> str:
    """A year as it is said: ``1999`` -> ``"nineteen ninety-nine"``, ``2005`` -> ``"two
    thousand five"``, ``1900`` -> ``"nineteen hundred"``, ``1905`` -> ``"nineteen oh
    five"``, ``2024`` -> ``"twenty twenty-four"``."""
    n = int(n)
    if not 1000 <= n <= 9999 or (2000 <= n <= 2009) or n % 1000 == 0:
        return number_to_words(n, british)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return f"{number_to_words(hi)} hundred"
    tail = f"oh {_ONES[lo]}" if lo < 10 else number_to_words(lo)
    return f"{number_to_words(hi)} {tail}"


def _digits(s: str) -> int:
    return int(s.replace(",", ""))


def _decimal(whole: str, frac: str, british: bool) -> str:
    out = number_to_words(_digits(whole), british) if whole else "zero"
    return out + " point " + " ".join(_ONES[int(d)] for d in frac) if frac else out


def _money(m: re.Match, british: bool) -> str:
    symbol, whole, frac, scale = m.group("cur"), m.group("whole"), m.group("frac"), m.group("scale")
    major1, major, minor1, minor = _CURRENCIES[symbol]
    if scale:  # "$1.5 million" -> "one point five million dollars"
        return f"{_decimal(whole, frac or '', british)} {scale.lower()} {major}"
    units = _digits(whole)
    cents = int((frac + "0")[:2]) if frac else 0
    parts = []
    if units or not cents:
        parts.append(f"{number_to_words(units, british)} {major1 if units == 1 else major}")
    if cents:
        parts.append(f"{number_to_words(cents, british)} {minor1 if cents == 1 else minor}")
    return " and ".join(parts)


def _date(day: int, month: int, year: str | None, british: bool) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    name, nth = _MONTHS[month - 1], ordinal_words(day, british)
    said = f"the {nth} of {name}" if british else f"{name} {nth}"
    return said + (f", {year_words(int(year), british)}" if year else "")


def _plural(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _month_index(name: str) -> int:
    return next(i for i, m in enumerate(_MONTHS) if m.lower().startswith(name.lower()[:3])) + 1


def _time(m: re.Match, british: bool) -> str:
    hour, minute = int(m.group("h")), int(m.group("m"))
    if hour > 23 or minute > 59:
        return m.group(0)
    said = number_to_words(hour, british)
    if minute == 0:
        said += " o'clock" if not m.group("ampm") else ""
    elif minute < 10:
        said += f" oh {_ONES[minute]}"
    else:
        said += " " + number_to_words(minute, british)
    if m.group("ampm"):
        said += " " + " ".join(m.group("ampm").lower().replace(".", "").strip())
    return said


_NUM = r"\d{1,3}(?:,\d{3})+|\d+"
_RULES: list[tuple[re.Pattern, object]] = [
    # currencies: $3.50, €1,200, £1.5 million
    (
        re.compile(
            rf"(?P<cur>[$€£¥₹])\s?(?P<whole>{_NUM})(?:\.(?P<frac>\d+))?"
            r"(?:\s?(?P<scale>thousand|million|billion|trillion)\b)?",
            re.I,
        ),
        _money,
    ),  # fmt: skip
    # ISO dates 2024-03-05
    (
        re.compile(r"\b(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})\b"),
        lambda m, b: _date(int(m["d"]), int(m["mo"]), m["y"], b),
    ),
    # numeric dates 3/5/2024: month first in American English, day first in British
    (
        re.compile(r"\b(?P<a>\d{1,2})/(?P<c>\d{1,2})/(?P<y>\d{4})\b"),
        lambda m, b: (
            _date(int(m["a"]), int(m["c"]), m["y"], b)
            if b
            else _date(int(m["c"]), int(m["a"]), m["y"], b)
        ),
    ),
    # March 5, 2024 / March 5th / Mar. 5
    (
        re.compile(
            rf"\b(?P<mon>{_MONTH_RE})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b"
            r"(?:,?\s+(?P<y>\d{4})\b)?"
        ),
        lambda m, b: _date(int(m["d"]), _month_index(m["mon"]), m["y"], False),
    ),
    # 5 March 2024 / 5th of March
    (
        re.compile(
            rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<mon>{_MONTH_RE})\b"
            r"(?:,?\s+(?P<y>\d{4})\b)?"
        ),
        lambda m, b: _date(int(m["d"]), _month_index(m["mon"]), m["y"], True),
    ),
    # times 3:30, 10:05 pm
    (re.compile(r"\b(?P<h>\d{1,2}):(?P<m>\d{2})(?:\s?(?P<ampm>[ap]\.?m\.?))?(?!\d)", re.I), _time),
    # decades: 1990s, '90s
    (
        re.compile(r"\b(?P<y>1\d|20)(?P<t>\d)0s\b"),
        lambda m, b: _plural(year_words(int(m["y"] + m["t"] + "0"), b)),
    ),
    # percentages 12%, 3.5 %
    (
        re.compile(rf"(?P<n>{_NUM})(?:\.(?P<f>\d+))?\s?%"),
        lambda m, b: _decimal(m["n"], m["f"] or "", b) + " percent",
    ),
    # ordinals 21st
    (
        re.compile(r"\b(?P<n>\d+)(?:st|nd|rd|th)\b", re.I),
        lambda m, b: ordinal_words(int(m["n"]), b),
    ),
    # years: a bare four-digit number from 1100 to 2099 with nothing numeric around it
    (
        re.compile(r"(?<![\d.,])\b(?P<y>1[1-9]\d\d|20\d\d)\b(?![.,]?\d)"),
        lambda m, b: year_words(int(m["y"]), b),
    ),
    # dotted sequences (versions, section numbers): 1.2.3 -> one point two point three
    (
        re.compile(r"(?<![\w.])(?P<ver>v)?(?P<v>\d+(?:\.\d+){2,})(?![\d.]*\d)"),
        lambda m, b: (
            ("version " if m["ver"] else "")
            + " point ".join(number_to_words(int(p), b) for p in m["v"].split("."))
        ),
    ),
    # decimals and plain numbers (with thousands separators), signed
    (
        re.compile(rf"(?P<neg>(?<![\w.])-)?\b(?P<n>{_NUM})(?:\.(?P<f>\d+))?\b"),
        lambda m, b: ("minus " if m["neg"] else "") + _decimal(m["n"], m["f"] or "", b),
    ),
]


def normalize_text(text: str, british: bool = False) -> str:
    """Spells out numbers, ordinals, decimals, percentages, currencies ($ € £ ¥ ₹, with
    cents and "million"-style scales), dates (ISO, ``3/5/2024``, ``March 5, 2024``,
    ``5th of March``), clock times and years in English words, leaving everything else as it
    is. ``british`` reads numeric dates day first and says "and" after hundreds."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    for pattern, say in _RULES:
        text = pattern.sub(lambda m, say=say: say(m, british) or m.group(0), text)
    return text
