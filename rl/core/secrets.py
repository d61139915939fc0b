"""Credentials in tracking URIs: redacted wherever a URI is written or logged.

Imports neither torch nor mlflow (the config check uses it at parse time).
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:token|access_token|api_key|apikey|key|password|passwd|pwd|secret|sig)=)"
    r"[^&;#\s]+"
)


def redact(text: str) -> str:
    """`text` with URL credentials (user:password@, token=... query values) replaced by ***."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub("***@", str(text)))


def has_credentials(uri: str) -> bool:
    return redact(uri) != uri
