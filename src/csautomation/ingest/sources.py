"""sources.yaml: who may push signals to `POST /v1/signals`, and how each proves it.

    sources:
      product-analytics:            # the source's name, recorded with what it sends
        auth: token                 # Authorization: Bearer <the variable's value>
        secret_env: CSAUTO_SOURCE_PRODUCT_ANALYTICS_TOKEN
        types: [usage_daily]        # the signal types it may send (default: all)
      crm-webhooks:
        auth: hmac                  # X-Csauto-Source: crm-webhooks
        secret_env: CSAUTO_SOURCE_CRM_WEBHOOKS_SECRET
                                    # X-Csauto-Timestamp: <unix seconds>
                                    # X-Csauto-Signature: sha256=<hex HMAC-SHA256 of
                                    #                     "{timestamp}.{raw body}">

Two more kinds speak a vendor's own webhook, each at its own endpoint
(ingest/vendor_push.py): `auth: intercom` (POST /v1/intercom/<source>, X-Hub-Signature)
and `auth: segment` (POST /v1/segment/<source>, X-Signature or the write key); their
`mapping:` turns the vendor's events into signals (ingest/mapping.py).

Secrets live only in the environment (invariant 7): the file names the variable. A source
whose variable is unset refuses every request (401, naming the variable, never a value).
The HMAC scheme is the one our own outgoing webhook connector signs with, so one receiver
library checks both; a timestamp older than `tolerance` is refused (a replayed delivery).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csautomation import logs
from csautomation.config import Duration, YamlSyntaxError, load_file, validation_problems
from csautomation.connectors.webhook import verify_signature
from csautomation.errors import ConfigFileError, CsAutomationError, Problem
from csautomation.facts.model import SignalType
from csautomation.ingest.mapping import VendorMapping

SOURCE_HEADER = "x-csauto-source"
TIMESTAMP_HEADER = "x-csauto-timestamp"
SIGNATURE_HEADER = "x-csauto-signature"


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    auth: Literal["token", "hmac", "intercom", "segment"]
    secret_env: str = Field(
        pattern=r"^[A-Z_][A-Z0-9_]*$", description="the environment variable holding the secret"
    )
    types: list[SignalType] = Field(
        default_factory=list, description="signal types this source may send (empty: all)"
    )
    tolerance: Duration = Field(
        default=timedelta(minutes=5), description="hmac: how old a timestamp may be"
    )
    enabled: bool = True
    # intercom and segment sources: their events -> our signals (ingest/mapping.py)
    mapping: VendorMapping = Field(default_factory=VendorMapping)


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: dict[str, SourceSpec] = Field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    """The source a request proved it came from."""

    name: str
    spec: SourceSpec

    def allows(self, kind: SignalType) -> bool:
        return not self.spec.types or kind in self.spec.types


class SourceAuthError(CsAutomationError):
    """401: the request did not prove a source. The message never holds a secret."""


class Sources:
    def __init__(
        self,
        specs: Mapping[str, SourceSpec],
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.specs = {name: s for name, s in specs.items() if s.enabled}
        self.declared = dict(specs)  # the disabled ones too (a pull may use their mapping)
        self.env = os.environ if env is None else env
        self.clock = clock
        for spec in self.specs.values():
            if value := self.env.get(spec.secret_env, ""):
                logs.register(value)

    def missing_secrets(self) -> dict[str, str]:
        """source -> the variable it needs that is unset."""
        return {n: s.secret_env for n, s in self.specs.items() if not self.env.get(s.secret_env)}

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> Caller:
        """The source this request comes from: a named HMAC source whose signature checks
        out, else the token source whose secret the Bearer token is."""
        named = headers.get(SOURCE_HEADER, "").strip()
        if named:
            return self._hmac(named, headers, body)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise SourceAuthError(
                "send 'Authorization: Bearer <source token>', or 'X-Csauto-Source' with a "
                "signed body"
            )
        found: Caller | None = None
        for name, spec in self.specs.items():
            secret = self.env.get(spec.secret_env, "")
            # every source compared, in constant time: the answer time says nothing
            if spec.auth == "token" and secret and hmac.compare_digest(secret, token):
                found = Caller(name, spec)
        if found is None:
            raise SourceAuthError("unknown source token")
        return found

    def _hmac(self, name: str, headers: Mapping[str, str], body: bytes) -> Caller:
        spec = self.specs.get(name)
        if spec is None or spec.auth != "hmac":
            raise SourceAuthError(f"no HMAC source named '{name[:64]}' in sources.yaml")
        secret = self.env.get(spec.secret_env, "")
        if not secret:
            raise SourceAuthError(f"source '{name}' has no secret: {spec.secret_env} is not set")
        stamp = headers.get(TIMESTAMP_HEADER, "")
        signature = headers.get(SIGNATURE_HEADER, "")
        if not stamp or not signature:
            raise SourceAuthError(f"send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")
        tolerance = spec.tolerance.total_seconds()
        if not verify_signature(secret, stamp, body, signature, tolerance, self.clock()):
            raise SourceAuthError(
                "the signature does not match the body, or the timestamp is more than "
                f"{int(tolerance)} s away"
            )
        return Caller(name, spec)


def load_sources(path: Path, env: Mapping[str, str] | None = None) -> Sources:
    """The push sources; no file means none (the API then accepts no signals).
    ConfigFileError with file:line:column for every problem."""
    if not path.exists():
        return Sources({}, env)
    try:
        doc = load_file(path)
    except YamlSyntaxError as exc:
        raise ConfigFileError([exc.problem]) from None
    if doc.data is None:
        return Sources({}, env)
    if not isinstance(doc.data, dict):
        raise ConfigFileError([doc.problem((), "expected a mapping with 'sources:' at the top")])
    try:
        parsed = SourcesFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigFileError(validation_problems(doc, exc, model=SourcesFile)) from None
    bad = [n for n in parsed.sources if not n or len(n) > 64 or not n.replace("-", "").isalnum()]
    if bad:
        raise ConfigFileError(
            [
                Problem(str(path), *doc.position(("sources", n)), f"sources.{n}", _NAME_RULE)
                for n in bad
            ]
        )
    return Sources(parsed.sources, env)


_NAME_RULE = "a source name is letters, digits and dashes, at most 64 characters"
