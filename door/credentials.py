"""Who may call: API keys, UI logins and admins, read from `server.*` and checked at start.

One set of credentials serves every door. An API key works as a bearer token on /v1 and on the
UI's routes (gradio_client's `headers=`), and as the password on the UI's login page (with any
name that is not a login's). A UI login works on its page and on /v1 as the bearer token
"user:password". Only logins named in `server.admins` may change settings; a key never can, so a
leaked client key cannot rewrite config.yaml.

A malformed `ui_auth` entry is refused here, at start: Gradio would drop an entry without ":"
silently and serve with no login at all.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from asr.settings import ServerSettings, SettingsError

KEY_CALLER = "api-key"  # the name a bearer-key caller goes by (a label only: a key is never admin)


@dataclass(frozen=True)
class Caller:
    """Someone who presented a valid credential."""

    name: str
    admin: bool


@dataclass(frozen=True)
class Credentials:
    keys: tuple[str, ...] = ()
    logins: dict[str, str] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, server: ServerSettings) -> Credentials:
        """The checked credentials; SettingsError names the entry (never its secret) and the rule."""
        keys = []
        for number, key in enumerate(server.api_keys, 1):
            if key != key.strip() or not key:
                raise SettingsError(f"server.api_keys entry {number} is empty or starts or ends with a "
                                    "space; a client could never send it")
            keys.append(key)
        logins: dict[str, str] = {}
        for number, entry in enumerate(server.ui_auth, 1):
            user, colon, password = entry.partition(":")
            where = f"server.ui_auth entry {number}"
            if not colon:
                raise SettingsError(
                    f"{where} has no ':'; write each login as user:password. In SEACO_SERVER_UI_AUTH "
                    "a ',' separates logins, so a password holding ',' needs the JSON form "
                    "'[\"user:pa,ss\"]'")
            if not user or user != user.strip() or not password:
                raise SettingsError(f"{where} needs a user name without surrounding spaces and a "
                                    "non-empty password (user:password)")
            if user in logins:
                raise SettingsError(f"{where} repeats the user name '{user}'")
            logins[user] = password
        unknown = [name for name in server.admins if name not in logins]
        if unknown:
            raise SettingsError(f"server.admins names {', '.join(repr(n) for n in unknown)}, which "
                                "server.ui_auth does not list; admins are UI logins")
        return cls(tuple(keys), logins, frozenset(server.admins))

    @property
    def configured(self) -> bool:
        """Whether any credential is set: then every door but /health needs one."""
        return bool(self.keys or self.logins)

    def key_ok(self, given: str) -> bool:
        found = False
        for key in self.keys:  # every key compared, in constant time each
            found |= hmac.compare_digest(given.encode(), key.encode())
        return found

    def password_ok(self, user: str, password: str) -> bool:
        expected = self.logins.get(user)
        # An unknown user still costs one comparison, so timing does not tell names apart.
        same = hmac.compare_digest(password.encode(), (expected if expected is not None else "\0").encode())
        return same and expected is not None

    def bearer(self, header: str) -> Caller | None:
        """The caller behind an `Authorization: Bearer ...` header: an API key, or "user:password"."""
        scheme, _, given = header.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return None
        if self.key_ok(given):
            return Caller(KEY_CALLER, admin=False)
        user, colon, password = given.partition(":")
        if colon and self.password_ok(user, password):
            return self.login_caller(user)
        return None

    def ui_login(self, user: str, password: str) -> bool:
        """Gradio's login form: a login's own password, or an API key under any other name (a
        login's name with a key is refused, so a key holder can never pass for an admin)."""
        if user in self.logins:
            return self.password_ok(user, password)
        return bool(user) and self.key_ok(password)

    def login_caller(self, user: str) -> Caller:
        """The caller a logged-in session (or "user:password") stands for."""
        return Caller(user, admin=user in self.admins and user in self.logins)
