"""Where a process logs its runs, with the credentials kept apart from every string that gets recorded.

A lab's MLflow server may need a user and password (MLflow's basic-auth app). Users give them the MLflow way
(``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``) or inside the URI (``http://user:pass@host``). Either
way the URI we hand MLflow carries no password: MLflow puts request URLs into its error messages, and those end up
in run tags, tracebacks and logs. The credentials travel to the workers in this value (never in a command line or
an environment a cluster records) and are installed into the worker's environment, where MLflow reads them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional
from urllib.parse import unquote, urlsplit, urlunsplit

from mlflow.tracking import MlflowClient

USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
HTTP_SCHEMES = ("http", "https")
MASK = "***"
# user:password@ in any URI (a database URI keeps its password: SQLAlchemy needs it; it is only ever shown masked),
# also as Hydra's sweepers write it into overrides, with every ':' escaped as '\:'.
_USERINFO_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*\\?://[^/@:\s\\]*)\\?:(?P<password>[^/@\s]*)@")


def redact_uri(uri: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``; other URIs unchanged."""
    return _USERINFO_PASSWORD.sub(lambda m: f"{m['head']}:{MASK}@", uri)


def _without_userinfo(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class TrackingEndpoint:
    """An MLflow tracking URI plus the HTTP credentials that go with it (never shown, never in ``repr``)."""

    uri: str
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)

    @classmethod
    def from_uri(cls, uri: str, environ: Mapping[str, str] = os.environ) -> "TrackingEndpoint":
        """Credentials in an http(s) URI move out of it; else they come from MLflow's own variables."""
        parts = urlsplit(uri)
        if parts.scheme in HTTP_SCHEMES and parts.username is not None:
            return cls(_without_userinfo(uri), unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme in HTTP_SCHEMES and environ.get(USERNAME_ENV):
            return cls(uri, environ[USERNAME_ENV], environ.get(PASSWORD_ENV, ""))
        return cls(uri)

    @property
    def shown(self) -> str:
        """The URI as it may appear in output and records."""
        return redact_uri(self.uri)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must appear in no record: the HTTP password and a database URI's password."""
        found = [self.password] if self.password else []
        match = _USERINFO_PASSWORD.search(self.uri)
        if match and match["password"]:
            found.append(match["password"])
        return tuple(found)

    def install(self) -> None:
        """Make this process's MLflow clients send the credentials (MLflow reads them at each request)."""
        if self.username is not None:
            os.environ[USERNAME_ENV] = self.username
            os.environ[PASSWORD_ENV] = self.password or ""

    def client(self) -> MlflowClient:
        self.install()
        return MlflowClient(self.uri)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret masked: a last line of defence for messages we record (errors, tracebacks)."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return redact_uri(text)
