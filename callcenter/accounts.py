"""User accounts: creation, and the one password policy that the CLI and every console form
(new user, an administrator's reset, one's own change) apply."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from callcenter.domain import Role
from callcenter.storage.models import Store, User

MIN_PASSWORD_LENGTH = 8
# scrypt hashes whatever it is given: a megabyte "password" would cost every login check.
MAX_PASSWORD_LENGTH = 128
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")
_USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


class AccountError(ValueError):
    pass


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (lower-case), read once per process."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


# The rules a password can break (the console translates them by key).
PASSWORD_RULES = {
    "short": f"password must have at least {MIN_PASSWORD_LENGTH} characters",
    "long": f"password must have at most {MAX_PASSWORD_LENGTH} characters",
    "common": "password is too common (it is on the list of passwords that are tried first)",
    "username": "password must not contain the user name",
}


def password_problem(password: str, username: str) -> str | None:
    """The key in :data:`PASSWORD_RULES` of the rule ``password`` breaks for ``username``, or None.

    The policy: 8-128 characters, not on the common-password list (compared lower-case, also
    with the symbols a user typically appends stripped), and not containing the user name.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        return "short"
    if len(password) > MAX_PASSWORD_LENGTH:
        return "long"
    lowered = password.lower()
    common = common_passwords()
    if lowered in common or lowered.rstrip("!@#$%^&*.?") in common:
        return "common"
    name = username.strip().lower()
    if len(name) >= 3 and name in lowered:
        return "username"
    return None


def check_password_policy(password: str, username: str) -> None:
    """Raises:
        AccountError: naming the rule ``password`` breaks (see :func:`password_problem`).
    """
    problem = password_problem(password, username)
    if problem is not None:
        raise AccountError(PASSWORD_RULES[problem])


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
    check_password_policy(password, username)
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
