"""Who is asking: session cookie (UI), `Authorization: Bearer|Token TOKEN` (scripts), HTTP basic (Label Studio).

Roles are ordered viewer < annotator < admin; ``require(role)`` is the dependency every route uses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
import time
from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from pixclass.store import users

log = logging.getLogger(__name__)
COOKIE = "pixclass_session"
CSRF_HEADER = "x-requested-with"  # cookie-authenticated writes must carry it; cross-site forms cannot
BASIC_TTL = 60.0  # seconds a verified basic-auth pair is remembered, so Label Studio's calls skip argon2
# (each hit still reads the user row: a new password or role applies at once, even one set by another process)

router = APIRouter(prefix="/api", tags=["auth"])


@dataclass(frozen=True)
class Principal:
    id: int
    name: str
    role: str

    def can(self, role: str) -> bool:
        return users.RANK[self.role] >= users.RANK[role]


class BasicCache:
    """sha256(name, password) -> (user id, stored password hash, expiry). Lets repeated basic-auth requests skip
    argon2; a hit counts only while the user's stored hash is still the one the password was verified against."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._d: dict[str, tuple[int, str, float]] = {}

    def get(self, key: str) -> tuple[int, str] | None:
        with self._lock:
            hit = self._d.get(key)
            return (hit[0], hit[1]) if hit and hit[2] > time.monotonic() else None

    def put(self, key: str, user_id: int, password_hash: str) -> None:
        with self._lock:
            self._d[key] = (user_id, password_hash, time.monotonic() + BASIC_TTL)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


class LoginThrottle:
    """Failed logins per (name, client address): after MAX_FAILURES within FAILURE_WINDOW seconds, that name from
    that address gets 429 until the oldest failure is FAILURE_WINDOW old. A success clears the count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fails: dict[tuple[str, str], list[float]] = {}

    @staticmethod
    def _key(name: str, request: Request) -> tuple[str, str]:
        return name.lower(), request.client.host if request.client else ""

    def check(self, name: str, request: Request) -> None:
        key, now = self._key(name, request), time.monotonic()
        with self._lock:
            recent = self._fails[key] = [t for t in self._fails.get(key, []) if t > now - FAILURE_WINDOW]
        if len(recent) >= MAX_FAILURES:
            wait = int(recent[0] + FAILURE_WINDOW - now) + 1
            raise HTTPException(429, f"Too many failed logins for {name!r}; try again in {wait} s.",
                                headers={"Retry-After": str(wait)})

    def failed(self, name: str, request: Request) -> None:
        key, now = self._key(name, request), time.monotonic()
        log.warning("failed login for %r from %s", *key)
        with self._lock:
            if len(self._fails) >= MAX_TRACKED:  # guessing many names: forget the failures too old to count
                self._fails = {k: v for k, v in self._fails.items() if v and v[-1] > now - FAILURE_WINDOW}
                while len(self._fails) >= MAX_TRACKED:  # still too many: the oldest go first
                    del self._fails[next(iter(self._fails))]
            self._fails.setdefault(key, []).append(now)

    def succeeded(self, name: str, request: Request) -> None:
        with self._lock:
            self._fails.pop(self._key(name, request), None)


MAX_FAILURES = 10
FAILURE_WINDOW = 300.0
MAX_TRACKED = 10_000  # (name, address) pairs remembered; a flood of names cannot grow it without end


def _principal(u: users.User) -> Principal:
    return Principal(u.id, u.name, u.role)


BASIC_ROUTES = ("/setup", "/predict", "/webhook")  # Label Studio's ML-backend routes: basic auth is all it has


def _unauthorized(msg: str, request: Request | None = None) -> HTTPException:
    """401; with a basic-auth challenge only on the Label Studio routes. Elsewhere a challenge would make a browser
    ask for a password and then send it along with other sites' requests too (basic auth has no CSRF guard)."""
    if request is None or request.url.path not in BASIC_ROUTES:
        return HTTPException(401, msg)
    return HTTPException(401, msg, headers={"WWW-Authenticate": 'Basic realm="pixclass"'})


def _basic(request: Request, value: str) -> Principal:
    try:
        name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized("Malformed basic auth header.", request) from None
    key = hashlib.sha256(f"{name}\0{password}".encode()).hexdigest()
    cache: BasicCache = request.app.state.auth_cache
    with request.app.state.ws.session() as s:
        if (hit := cache.get(key)) is not None:
            u = s.get(users.User, hit[0])
            if u is not None and u.password_hash == hit[1]:
                return _principal(u)  # the role as stored now
        throttle: LoginThrottle = request.app.state.login_throttle
        throttle.check(name, request)
        u = users.authenticate(s, name, password)
        if u is None:
            throttle.failed(name, request)
            raise _unauthorized("Wrong user name or password.", request)
        throttle.succeeded(name, request)
        cache.put(key, u.id, u.password_hash)
        return _principal(u)


def _refuse_cross_site(request: Request) -> None:
    """403 for a write a browser sends from another site. A browser that has basic-auth credentials for this server
    (say, after opening /predict) sends them with other sites' requests too; it also says where a request comes
    from (Sec-Fetch-Site, Origin), which scripts and Label Studio do not send."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if site in ("cross-site", "same-site") or (origin and origin != "null" and origin.split("://", 1)[-1] != host):
        raise HTTPException(403, "A write from another site is refused. Use the pixclass page itself, or send the "
                                 "request from a script.")


def current_user(request: Request) -> Principal:
    """The authenticated caller, or 401."""
    _refuse_cross_site(request)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    ws = request.app.state.ws
    if scheme == "basic" and value:
        return _basic(request, value)
    if scheme in ("bearer", "token") and value:
        with ws.session() as s:
            u = users.user_for_token(s, value)
            if u is None:
                raise _unauthorized("Unknown or expired token. Create one with `pixclass user token NAME`.", request)
            return _principal(u)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        if request.method not in ("GET", "HEAD", "OPTIONS") and not request.headers.get(CSRF_HEADER):
            raise HTTPException(403, f"Cookie-authenticated writes need the {CSRF_HEADER} header.")
        with ws.session() as s:
            u = users.user_for_token(s, cookie)
            if u is not None:
                return _principal(u)
        raise _unauthorized("Session expired. Log in again.", request)
    raise _unauthorized("Log in, or send `Authorization: Bearer TOKEN` or HTTP basic auth.", request)


def require(role: str = "viewer"):
    """Dependency: the caller, who must have at least ``role``."""

    def dep(user: Principal = Depends(current_user)) -> Principal:
        if not user.can(role):
            raise HTTPException(403, f"This needs the {role} role; {user.name} is {user.role}.")
        return user

    return dep


class LoginBody(BaseModel):
    name: str = Field(max_length=200)
    password: str = Field(max_length=1000)


class UserOut(BaseModel):
    id: int
    name: str
    role: str


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: str
    password: str = Field(min_length=4, max_length=1000)
    replace: bool = Field(False, description="Give an existing user this role and password (a new password "
                                             "revokes its sessions and API tokens). Without it, 409.")


@router.post("/auth/login", response_model=UserOut)
def login(body: LoginBody, request: Request, response: Response) -> UserOut:
    """Check name and password; sets the session cookie used by the UI."""
    settings, throttle = request.app.state.settings, request.app.state.login_throttle
    throttle.check(body.name, request)
    with request.app.state.ws.session() as s:
        u = users.authenticate(s, body.name, body.password)
        if u is None:
            throttle.failed(body.name, request)
            raise HTTPException(401, "Wrong user name or password.")
        throttle.succeeded(body.name, request)
        token = users.create_token(s, u, kind="session", days=users.SESSION_DAYS)
        out = UserOut(id=u.id, name=u.name, role=u.role)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=settings.secure_cookies,
                        max_age=users.SESSION_DAYS * 86400)
    return out


@router.post("/auth/logout")
def logout(request: Request, response: Response) -> dict:
    token = request.cookies.get(COOKIE)
    if token:
        with request.app.state.ws.session() as s:
            users.revoke_token(s, token)
    response.delete_cookie(COOKIE)
    return {"ok": True}


@router.get("/auth/me", response_model=UserOut)
def me(user: Principal = Depends(current_user)) -> UserOut:
    return UserOut(id=user.id, name=user.name, role=user.role)


@router.get("/auth/session")
def session(request: Request) -> dict:
    """{"user": the caller, or null}: always 200, so that a page asking who is logged in before anyone has does
    not log an error (GET /auth/me answers 401 then)."""
    try:
        user = current_user(request)
    except HTTPException:
        return {"user": None}
    return {"user": UserOut(id=user.id, name=user.name, role=user.role).model_dump()}


@router.post("/tokens")
def new_token(request: Request, user: Principal = Depends(current_user)) -> dict:
    """A new API token for the caller (shown once)."""
    with request.app.state.ws.session() as s:
        token = users.create_token(s, s.get(users.User, user.id), kind="api")
    return {"token": token, "user": user.name}


@router.get("/users", response_model=list[UserOut])
def list_users(request: Request, _: Principal = Depends(require("admin"))) -> list[UserOut]:
    with request.app.state.ws.session() as s:
        return [UserOut(id=u.id, name=u.name, role=u.role) for u in users.list_users(s)]


@router.delete("/users/{name:path}")
def remove_user(name: str, request: Request, _: Principal = Depends(require("admin"))) -> dict:
    """Delete an account: its sessions and tokens stop working at once; its annotations stay under its name."""
    with request.app.state.ws.session() as s:
        if users.find_user(s, name) is None:
            raise HTTPException(404, f"No user {name!r}.")
        users.remove_user(s, name)
    request.app.state.auth_cache.clear()
    return {"removed": name}


@router.delete("/tokens")
def revoke_own_tokens(request: Request, user: Principal = Depends(current_user)) -> dict:
    """Revoke every API token of the caller (scripts must get a new one); the UI session stays."""
    with request.app.state.ws.session() as s:
        return {"revoked": users.revoke_tokens(s, s.get(users.User, user.id), kind="api")}


@router.post("/users", response_model=UserOut)
def add_user(body: NewUser, request: Request, _: Principal = Depends(require("admin"))) -> UserOut:
    """Create an account; 409 if the name exists, unless ``replace`` is true."""
    with request.app.state.ws.session() as s:
        if not body.replace and users.find_user(s, body.name) is not None:
            raise HTTPException(409, f"User {body.name!r} already exists. Send \"replace\": true to give it "
                                     "the new role and password (a new password signs it out everywhere).")
        u = users.create_user(s, body.name, body.role, body.password, replace=body.replace)
        return UserOut(id=u.id, name=u.name, role=u.role)
