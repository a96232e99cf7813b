"""User accounts: creation and password checks shared by the CLI and the console."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from callcenter.domain import Role
from callcenter.storage.models import Store, User

MIN_PASSWORD_LENGTH = 8
_USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


class AccountError(ValueError):
    pass


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def verify_password(user: User, password: str) -> bool:
    return check_password_hash(user.password_hash, password)


def upsert_user(
    session: Session,
    username: str,
    password: str,
    role: Role,
    *,
    store_code: str | None = None,
    display_name: str | None = None,
) -> tuple[User, bool]:
    """Create or update a user. Returns (user, created).

    Raises:
        AccountError: bad username, weak password or unknown store.
    """
    if not (1 <= len(username) <= 64) or set(username) - _USERNAME_CHARS:
        raise AccountError("username: 1-64 characters from letters, digits and . _ - @")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password.lower() in {"password", "12345678", "123456789", "admin123", "callcenter"}:
        raise AccountError("password is too common")
    store_id = None
    if store_code:
        store_id = session.scalar(sa.select(Store.id).where(Store.code == store_code))
        if store_id is None:
            raise AccountError(f"unknown store {store_code!r}")
    user = session.scalar(sa.select(User).where(User.username == username))
    created = user is None
    if created:
        user = User(username=username)
        session.add(user)
    user.password_hash = hash_password(password)
    user.role = role
    user.store_id = store_id
    user.display_name = display_name or user.display_name or username
    user.active = True
    session.flush()
    return user, created
