"""The form in which a judged text is kept in the judgement log, chosen per tenant."""

from __future__ import annotations

import hashlib
import re
from typing import Literal

TextMode = Literal["full", "masked", "hash"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGITS = re.compile(r"\d")


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def mask(text: str) -> str:
    """Hide e-mail addresses and every digit (phone, card, account and My Number numbers)."""
    return _DIGITS.sub("*", _EMAIL.sub("<email>", text))


def stored_text(text: str | None, mode: str) -> str | None:
    if text is None or mode == "hash":
        return None
    return mask(text) if mode == "masked" else text
