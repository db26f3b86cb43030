"""A minimal JSON client for Label Studio's REST API, on the standard library alone.

Why not ``label-studio-sdk``: installing it (2.1) pulls about thirty packages into the
environment (opencv, nltk, black, Faker, ...) and replaces NumPy with an older release;
the integration needs four endpoints, which ``urllib`` reaches without any dependency.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

__all__ = ["LabelStudioConnectionError", "LabelStudioError", "LabelStudioHTTP"]


class LabelStudioError(RuntimeError):
    """Label Studio answered, but with an error (bad token, unknown project, ...).

    ``status`` is the HTTP status code, or ``None`` when the answer was not JSON.
    """

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioConnectionError(ConnectionError):
    """No answer from Label Studio: the server is down, unreachable or timed out."""


def _is_jwt(token: str) -> bool:
    """Personal access tokens (Label Studio >= 1.17) are JWTs: three dot-separated parts."""
    return token.count(".") == 2


class LabelStudioHTTP:
    """``request(method, path, body)`` against ``url`` with ``token``, JSON in and out.

    A legacy token is sent as ``Authorization: Token <token>``; a personal access token
    (a JWT) is exchanged at ``/api/token/refresh/`` for a short-lived access token, sent
    as ``Authorization: Bearer <access>`` and renewed once when the server answers 401.
    """

    def __init__(self, url: str, token: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._access: Optional[str] = None

    def _authorization(self) -> str:
        if not _is_jwt(self._token):
            return f"Token {self._token}"
        if self._access is None:
            answer = self._send("POST", "/api/token/refresh/", {"refresh": self._token}, None)
            if not isinstance(answer, dict) or not isinstance(answer.get("access"), str):
                raise LabelStudioError(
                    f"Label Studio at {self.url} gave no access token for the personal access "
                    f"token (answer: {str(answer)[:200]})."
                )
            self._access = answer["access"]
        return f"Bearer {self._access}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[dict[str, Any]] = None,
    ) -> Any:
        """The decoded JSON answer of ``method path?query`` with JSON ``body``."""
        try:
            return self._send(method, path, body, self._authorization(), query)
        except LabelStudioError as err:
            if err.status != 401 or not _is_jwt(self._token):
                raise
            self._access = None  # the access token expired: renew it once
            return self._send(method, path, body, self._authorization(), query)

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        authorization: Optional[str],
        query: Optional[dict[str, Any]] = None,
    ) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode(errors="replace")
            hint = ""
            if err.code == 401:
                hint = (
                    " Check the token; a legacy token needs a server started with "
                    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true (Label Studio >= 1.17), a "
                    "personal access token does not."
                )
            raise LabelStudioError(
                f"Label Studio at {self.url} answered {method} {path} with HTTP {err.code}: "
                f"{detail}{hint}",
                status=err.code,
            ) from err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            reason = getattr(err, "reason", err)
            raise LabelStudioConnectionError(
                f"Could not reach Label Studio at {self.url} ({method} {path}): {reason}."
            ) from err
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as err:
            raise LabelStudioError(
                f"{self.url} answered {method} {path} with something that is not JSON "
                f"({raw[:80]!r}); is it a Label Studio server?"
            ) from err
