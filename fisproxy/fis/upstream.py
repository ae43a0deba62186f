"""botocore clients for calls to the upstream: the engine's own (CloudWatch alarms, logs) and an
experiment's, made with the credentials of its role.

Blocking: call these from a worker thread (`asyncio.to_thread`), never on the event loop.
Credentials come from the ordinary chain; when it finds none (a laptop against moto), the
dummy `testing` keys moto and LocalStack accept. With an explicit endpoint the instance-metadata
provider is dropped (it would stall on its network timeout) and environment proxies are ignored
(HTTPS_PROXY may point at fisproxy itself).

An experiment acts with its template's `roleArn`, as FIS does: `RoleSessions` assumes the role
with STS AssumeRole on the upstream, using the proxy's own credentials, and caches the
credentials until shortly before they expire. A refusal is a `Failure` (located at `roleArn`) carrying the upstream's
message. Never log the credentials themselves.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from fisproxy.fis.failure import Failure

_lock = threading.Lock()

# The AssumeRole session lasts an hour; credentials are renewed when less than this is left,
# so a client handed out never carries credentials about to expire mid-call.
ROLE_SESSION_SECONDS = 3600
REFRESH_MARGIN_SECONDS = 300
ROLE_LOCATION = "roleArn"  # where a role failure is located (ExperimentError.location)


@cache
def _session(offline: bool) -> tuple[botocore.session.Session, Credentials]:
    session = botocore.session.Session()
    if offline:
        session.get_component("credential_provider").remove("iam-role")
    creds = session.get_credentials()
    if creds is None:
        creds = Credentials("testing", "testing")
    return session, creds


def _config(endpoint: str | None) -> Config:
    return Config(
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=5,
        read_timeout=10,
        proxies={} if endpoint else None,
    )


def _create(service: str, region: str, endpoint: str | None, creds: ReadOnlyCredentials) -> Any:
    with _lock:  # botocore sessions are not thread-safe while creating clients
        session, _ = _session(endpoint is not None)
        return session.create_client(
            service,
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            aws_session_token=creds.token,
            config=_config(endpoint),
        )


def own_credentials(endpoint: str | None) -> ReadOnlyCredentials:
    """The proxy's own upstream credentials (standard chain, else moto's test keys)."""
    with _lock:
        _, creds = _session(endpoint is not None)
        return creds.get_frozen_credentials()


def client(service: str, region: str, endpoint: str | None) -> Any:
    """A botocore client for `service` in `region` with the proxy's own credentials, at
    `endpoint` if given, else real AWS."""
    return _create(service, region, endpoint, own_credentials(endpoint))


def arn_region(arn: str, default: str) -> str:
    """The region field of an ARN (`arn:aws:cloudwatch:<region>:...`), or `default` if empty."""
    parts = arn.split(":", 5)
    return parts[3] if len(parts) == 6 and parts[3] else default


def arn_partition(arn: str, default: str = "aws") -> str:
    parts = arn.split(":", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "arn" and parts[1] else default


# ---- the experiment role --------------------------------------------------------------------

# AccessDenied and friends: the role, or the proxy's credentials, may not do this.
_DENIED = re.compile(r"AccessDenied|Unauthorized|NotAuthorized|Forbidden|InvalidClientTokenId|"
                     r"SignatureDoesNotMatch|ExpiredToken|AuthFailure|InvalidAccessKeyId")


def error_code(err: Exception) -> str:
    """The FIS error code for an upstream failure: AuthorizationFailure when the upstream
    refused the credentials, DependentServiceFailure otherwise."""
    code = err.response.get("Error", {}).get("Code", "") if isinstance(err, ClientError) else ""
    return "AuthorizationFailure" if _DENIED.search(str(code)) else "DependentServiceFailure"


def describe_error(err: Exception) -> str:
    """The upstream's own words for a failed call: `Code: message` of an AWS error; for an
    answer that is not an AWS error (moto's HTML page for an API it lacks, a proxy's error page)
    its HTTP status and a short excerpt, said to be no AWS error; or why the upstream could not
    be reached. Never fisproxy's own wording of a parse failure."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code, message = str(error.get("Code", "")), str(error.get("Message", ""))
        if _looks_like_html(message) or (code.isdigit() and not message):
            return _not_aws(status or code, message)
        return f"{code}: {message}" if message else code
    if isinstance(err, ResponseParserError):
        body = _parser_error_body(str(err))
        return _not_aws(_html_status(body), body)
    text = str(err)
    if _looks_like_html(text):
        prefix = text.split("<", 1)[0].split(":", 1)[0].strip()
        return f"{prefix}: {_html_text(text)}" if prefix else _html_text(text)
    return text


UPSTREAM_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError, ResponseParserError)
"""What a botocore call to the upstream raises when the upstream fails or answers something
that is not AWS's (botocore's ResponseParserError is no BotoCoreError)."""


def lacks_api(err: Exception) -> bool:
    """Whether the upstream says it does not implement the API called: LocalStack answers 501
    ("not yet implemented"); moto answers a bare HTTP 500 error page (no AWS error at all)
    for an operation it lacks."""
    if isinstance(err, ClientError):
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(err.response.get("Error", {}).get("Message", ""))
        if status == 501 or "not yet implemented" in message.lower():
            return True
        return status == 500 and _generic_500(message)
    if isinstance(err, ResponseParserError):
        return _generic_500(_parser_error_body(str(err)))
    return False


def _not_aws(status: object, body: str) -> str:
    excerpt = _html_text(body) if _looks_like_html(body) else re.sub(r"\s+", " ", body).strip()[:200]
    return f"HTTP {status or '?'}, not an AWS error: \"{excerpt or 'no error message'}\""


def _generic_500(body: str) -> bool:
    # Werkzeug's (moto server's) page for an unhandled exception: moto raises NotImplementedError
    # for every operation it does not implement, and answers with this page.
    return _looks_like_html(body) and "500 internal server error" in body.lower()


def _parser_error_body(text: str) -> str:
    """The raw answer botocore quotes in a ResponseParserError (`...received...:\nb'<html>...'`)."""
    m = re.search(r"b(['\"])(.*)\1\s*$", text, re.S)
    if not m:
        return text
    try:
        return bytes(m.group(2), "latin-1").decode("unicode_escape")
    except (UnicodeDecodeError, ValueError):
        return m.group(2)


def _html_status(body: str) -> str | None:
    m = re.search(r"<title>\s*(\d{3})\b", body, re.I)
    return m.group(1) if m else None


def _looks_like_html(text: str) -> bool:
    return "<html" in text.lower() or "<!doctype" in text.lower() or "<title>" in text.lower()


def _html_text(text: str) -> str:
    title = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
    para = re.search(r"<p>(.*?)</p>", text, re.S | re.I)
    parts = [m.group(1).strip() for m in (title, para) if m]
    out = " - ".join(parts) if parts else re.sub(r"<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", out).strip()[:300]


@dataclass(frozen=True, slots=True)
class AssumedRole:
    role_arn: str
    account_id: str
    credentials: ReadOnlyCredentials
    expires_at: float  # epoch seconds


_SESSION_NAME = re.compile(r"[^\w+=,.@-]")


def session_name(experiment_id: str | None) -> str:
    """The RoleSessionName an experiment's calls carry (2-64 chars of [\\w+=,.@-])."""
    name = _SESSION_NAME.sub("-", f"fisproxy-{experiment_id}" if experiment_id else "fisproxy")
    return name[:64]


class RoleSessions:
    """Experiment roles assumed on one upstream, cached per (role, session name) until
    REFRESH_MARGIN_SECONDS before they expire. Thread-safe; blocking."""

    def __init__(
        self,
        endpoint: str | None,
        *,
        clock: Callable[[], float] = time.time,
        sts_factory: Callable[[str], Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._clock = clock
        self._sts_factory = sts_factory or (lambda region: client("sts", region, endpoint))
        self._cache: dict[tuple[str, str], AssumedRole] = {}
        self._lock = threading.Lock()

    def assume(self, role_arn: str, region: str, experiment_id: str | None = None) -> AssumedRole:
        """The role's credentials, assumed now or taken from the cache; Failure (at `roleArn`) if the
        upstream refuses (its message in the reason) or cannot be reached."""
        name = session_name(experiment_id)
        key = (role_arn, name)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached.expires_at - self._clock() > REFRESH_MARGIN_SECONDS:
                return cached
        try:
            answer = self._sts_factory(region).assume_role(
                RoleArn=role_arn, RoleSessionName=name, DurationSeconds=ROLE_SESSION_SECONDS
            )
        except (ClientError, BotoCoreError) as err:
            raise Failure(
                f"Cannot assume the experiment role {role_arn} on the upstream: {describe_error(err)}",
                error_code(err) if isinstance(err, ClientError) else "DependentServiceFailure",
                ROLE_LOCATION,
            ) from err
        c = answer["Credentials"]
        expiration = c["Expiration"]
        expires_at = expiration.timestamp() if hasattr(expiration, "timestamp") else float(expiration)
        assumed_arn = answer.get("AssumedRoleUser", {}).get("Arn", role_arn)
        account = assumed_arn.split(":")[4] if assumed_arn.count(":") >= 5 else ""
        assumed = AssumedRole(
            role_arn=role_arn,
            account_id=account or (role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""),
            credentials=ReadOnlyCredentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]),
            expires_at=expires_at,
        )
        with self._lock:
            self._cache[key] = assumed
        return assumed

    def session(self, role_arn: str, region: str, experiment_id: str | None = None) -> RoleSession:
        """Clients for one experiment's role, in its region; assumes the role now, so a refusal
        surfaces at the experiment's start (Failure)."""
        session = RoleSession(self, role_arn, region, experiment_id)
        session.assumed()
        return session


class RoleSession:
    """An experiment's clients, made with its role's credentials (renewed when near expiry).
    `client(service, region)` is what resource actions and target resolution call."""

    def __init__(self, sessions: RoleSessions, role_arn: str, region: str, experiment_id: str | None) -> None:
        self._sessions = sessions
        self.role_arn = role_arn
        self.region = region
        self.experiment_id = experiment_id
        self.partition = arn_partition(role_arn)
        self._clients: dict[tuple[str, str], tuple[ReadOnlyCredentials, Any]] = {}
        self._lock = threading.Lock()

    def assumed(self) -> AssumedRole:
        return self._sessions.assume(self.role_arn, self.region, self.experiment_id)

    @property
    def account_id(self) -> str:
        return self.assumed().account_id

    def client(self, service: str, region: str | None = None) -> Any:
        assumed = self.assumed()
        key = (service, region or self.region)
        with self._lock:
            cached = self._clients.get(key)
            if cached is not None and cached[0] == assumed.credentials:
                return cached[1]
        made = _create(service, key[1], self._sessions.endpoint, assumed.credentials)
        with self._lock:
            self._clients[key] = (assumed.credentials, made)
        return made
