"""Browser sign-in for the web gallery: session cookies and a sign-in rate limit.

With ``SDXL_MCP_HTTP_TOKEN`` set, API clients send ``Authorization: Bearer``; a browser posts
the token once to ``/gallery/login`` and gets a session cookie: a random session id, never
the token, ``HttpOnly`` and ``SameSite=Strict``, that authorizes only reading (``GET``/``HEAD``
of the gallery and its images). Failed sign-ins are limited per client address (429 with
``Retry-After``) (details: docs/ARCHITECTURE.md "Guarantees").
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.requests import HTTPConnection
from starlette.responses import Response

__all__ = [
    "COOKIE_NAME",
    "FAILURE_WINDOW_S",
    "MAX_FAILURES",
    "SESSION_TTL_S",
    "FailureLimiter",
    "Sessions",
    "check_token",
    "cookie_may_authorize",
    "is_gallery_page",
    "is_public",
]

COOKIE_NAME = "sdxl_mcp_session"
SESSION_TTL_S = 24 * 3600
MAX_SESSIONS = 256
MAX_FAILURES = 5
FAILURE_WINDOW_S = 60.0
_MAX_TRACKED_CLIENTS = 4096

GALLERY = "/gallery"
LOGIN = "/gallery/login"
LOGOUT = "/gallery/logout"
STATIC = "/gallery/static/"
IMAGES = "/api/media/images/"


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()


class Sessions:
    """Signed-in browsers: random ids, kept (hashed) in memory until they expire."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._expiry: OrderedDict[bytes, float] = OrderedDict()  # oldest first
        self._lock = threading.Lock()

    def create(self) -> str:
        """A new session id (the cookie value); the oldest session goes past MAX_SESSIONS."""
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[_digest(session_id)] = self._clock() + self._ttl_s
            while len(self._expiry) > MAX_SESSIONS:
                self._expiry.popitem(last=False)
        return session_id

    def valid(self, session_id: str | None) -> bool:
        if not session_id or len(session_id) > 100:
            return False
        key = _digest(session_id)
        with self._lock:
            expiry = self._expiry.get(key)
            if expiry is None:
                return False
            if expiry <= self._clock():
                del self._expiry[key]
                return False
            return True

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._expiry.pop(_digest(session_id), None)

    def set_cookie(self, response: Response, session_id: str, *, secure: bool) -> None:
        response.set_cookie(COOKIE_NAME, session_id, max_age=int(self._ttl_s), path="/",
                            secure=secure, httponly=True, samesite="strict")

    @staticmethod
    def clear_cookie(response: Response, *, secure: bool) -> None:
        response.delete_cookie(COOKIE_NAME, path="/", secure=secure, httponly=True,
                               samesite="strict")


class FailureLimiter:
    """At most ``limit`` failed sign-ins per client within ``window_s`` seconds."""

    def __init__(self, limit: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client, deque())
        while times and times[0] <= now - self._window_s:
            times.popleft()
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        now = self._clock()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self._limit:
                return None
            return max(1, math.ceil(times[0] + self._window_s - now))

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            times = self._recent(client, now)
            times.append(now)
            self._failures[client] = times
            self._failures.move_to_end(client)
            while len(self._failures) > _MAX_TRACKED_CLIENTS:
                self._failures.popitem(last=False)


def check_token(supplied: str, token: str) -> bool:
    """Constant-time comparison of a supplied token with the configured one."""
    return hmac.compare_digest(supplied.encode("utf-8", "surrogatepass"), token.encode())


def is_public(path: str) -> bool:
    """Paths served without any credentials: the sign-in form, logout and the CSS."""
    return path in (LOGIN, LOGOUT) or path.startswith(STATIC)


def is_gallery_page(path: str) -> bool:
    """Pages a browser navigates to (an unauthorized visit is sent to sign in)."""
    return path == GALLERY or path.startswith(GALLERY + "/")


def cookie_may_authorize(conn: HTTPConnection) -> bool:
    """Whether a session cookie is accepted for this request (reading only)."""
    if conn.scope.get("method") not in ("GET", "HEAD"):
        return False
    path = conn.url.path
    return is_gallery_page(path) or path.startswith(IMAGES)
