"""Accounts and tokens: users with a role, argon2 password hashes, API and session tokens (stored hashed).

A new password revokes the user's tokens, API and session alike: whoever had them must log in or ask for new ones.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ForeignKey, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from pixclass.errors import ConfigError
from pixclass.store.tables import Base, utcnow

ROLES: tuple[str, ...] = ("admin", "annotator", "viewer")
RANK = {"viewer": 0, "annotator": 1, "admin": 2}  # a role may do everything a lower one may
SESSION_DAYS = 7  # session cookie lifetime
_hasher = PasswordHasher()  # argon2id with the library's recommended parameters


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is stored; ``kind`` is 'api' (scripts) or 'session' (UI cookie)."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="api")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}. Use one of: {', '.join(ROLES)}.")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_user(s: Session, name: str) -> User | None:
    return s.scalar(select(User).where(User.name == name))


def create_user(s: Session, name: str, role: str, password: str, *, replace: bool = False) -> User:
    """Add an account. An existing name is an error unless ``replace``: then it gets the new role and, if the
    password differs, the new password, and all its tokens (API and session) are revoked."""
    _check_role(role)
    if not name.strip() or name != name.strip() or len(name) > 200 or ":" in name:
        raise ConfigError(f"User name {name!r} must be 1-200 characters without ':' or spaces around it.")
    if len(password) < 4:
        raise ConfigError("The password must have at least 4 characters.")
    user = find_user(s, name)
    if user is None:
        user = User(name=name, role=role, password_hash=_hasher.hash(password))
        s.add(user)
    elif not replace:
        raise ConfigError(f"User {name!r} already exists. Replace it explicitly to change its role or password.")
    else:
        user.role = role
        if not _matches(user.password_hash, password):
            user.password_hash = _hasher.hash(password)
            revoke_tokens(s, user)
    s.flush()
    return user


def _matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(s: Session, name: str, password: str) -> User | None:
    """The user if the password matches, else None. Takes ~50 ms (argon2) on purpose."""
    user = find_user(s, name)
    if user is None:
        _hasher.hash(password)  # same cost either way, so timing does not reveal which names exist
        return None
    return user if _matches(user.password_hash, password) else None


def create_token(s: Session, user: User, *, kind: str = "api", days: float | None = None) -> str:
    """A new random token for ``user``; the plain text is returned once and never stored."""
    token = secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(days=days) if days else None
    s.add(ApiToken(user_id=user.id, token_hash=hash_token(token), kind=kind, expires_at=expires))
    s.flush()
    return token


def user_for_token(s: Session, token: str) -> User | None:
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or (row.expires_at is not None and row.expires_at < utcnow()):
        return None
    return s.get(User, row.user_id)


def revoke_token(s: Session, token: str) -> None:
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is not None:
        s.delete(row)


def revoke_tokens(s: Session, user: User, *, kind: str | None = None) -> int:
    """Delete the user's tokens (of ``kind``, 'api' or 'session'; all when None): they are signed out there.
    Returns how many."""
    q = delete(ApiToken).where(ApiToken.user_id == user.id)
    return int(s.execute(q.where(ApiToken.kind == kind) if kind else q).rowcount or 0)


def remove_user(s: Session, name: str) -> None:
    """Delete an account and its tokens. Its annotations stay (they name their author). The last admin stays:
    someone must be able to manage the workspace."""
    user = find_user(s, name)
    if user is None:
        raise ConfigError(f"No user {name!r}. `pixclass user list` shows the accounts.")
    revoke_tokens(s, user)  # a write first: SQLite's write lock, so two admins removing each other count in turn
    admins = s.scalars(select(User.id).where(User.role == "admin").with_for_update()).all()  # PostgreSQL: rows
    if user.role == "admin" and len(admins) == 1:
        raise ConfigError(f"{name!r} is the only admin; make another admin first.")
    s.delete(user)
    s.flush()


def list_users(s: Session) -> list[User]:
    return list(s.scalars(select(User).order_by(User.name)))
