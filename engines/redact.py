"""Secrets out of every text that leaves a worker: error messages, page text, summaries.

A proxy or an API may echo the credentials it was sent: the whole key, its base64, a
`Bearer ...` header, or a piece cut short by whoever truncated the message. So text is
scrubbed before it is cut, and any run of 8 or more characters that starts a secret goes.
"""

from __future__ import annotations

import base64
import os
import re

MIN_PREFIX = 8  # a shorter piece of a key tells an attacker little and matches ordinary words
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
AUTH_HEADER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
MASK = "***"
MAX_ERROR_CHARS = 500  # of an error message kept in a page row, after redaction


def secrets_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """Values of the environment's secret-looking variables (API keys, tokens, passwords)."""
    environ = os.environ if environ is None else environ
    return [v for k, v in environ.items() if SECRET_NAME.search(k) and len(v) >= MIN_PREFIX]


def redact(text: str, secrets: list[str] | None = None) -> str:
    """`text` without authorization headers, the secrets, their base64, or any 8+ character prefix of those."""
    if not text:
        return text
    text = AUTH_HEADER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    for secret in secrets_from_env() if secrets is None else secrets:
        if len(secret) < MIN_PREFIX:
            continue
        for form in (secret, base64.b64encode(secret.encode()).decode()):
            text = _without_prefixes(text, form)
    return text


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str | None, secrets: list[str] | None = None) -> str | None:
    """Text from an engine as the dataset keeps it: secrets out (`redact`), and lone surrogates (which
    JSON allows and no UTF-8 file can hold) as U+FFFD."""
    if not text:
        return text
    return LONE_SURROGATE.sub("\ufffd", redact(str(text), secrets))


def url_secrets(url: str) -> list[str]:
    """What in `url` is a credential: the user and password of `user:password@host`, and the values
    of query parameters named like secrets (`?api_key=...`, `&token=...`); `api-version=` is not."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
        found = [v for v in (parts.username, parts.password) if v]
    except ValueError:  # not a URL at all: the client refuses it on its own
        return []
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if v and SECRET_NAME.search(k)]
    return found


def public_url(url: str) -> str:
    """`url` as a log or a dataset may show it: scheme and userinfo dropped, secret query values masked."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
    except ValueError:
        return MASK
    shown = host + parts.path + (f"?{parts.query}" if parts.query else "")
    for secret in url_secrets(url):
        shown = shown.replace(secret, MASK)
    return shown


def error_text(error: BaseException | str, secrets: list[str] | None = None, limit: int = MAX_ERROR_CHARS) -> str:
    """An error (or its message) as a page row or a log may hold it: secrets out, then cut to `limit`
    characters (scrubbed before the cut, so that a cut key cannot slip past)."""
    text = str(error)
    if not text and isinstance(error, BaseException):
        text = type(error).__name__  # an exception with no message: its kind
    text = redact(text, secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _without_prefixes(text: str, secret: str) -> str:
    head, out, i = secret[:MIN_PREFIX], [], 0
    while (j := text.find(head, i)) >= 0:
        n = MIN_PREFIX
        while n < len(secret) and j + n < len(text) and text[j + n] == secret[n]:
            n += 1
        out += [text[i:j], MASK]
        i = j + n
    return "".join(out) + text[i:]
