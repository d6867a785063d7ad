"""`--web.config.file`: TLS, client certificates, basic auth and extra response headers
of the exporter's own HTTP server, in the Prometheus exporter-toolkit format, so one
file works for this exporter and every Go exporter of a deployment."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from ttft_exporter.config import validation_problems
from ttft_exporter.errors import ConfigError, ConfigProblem
from ttft_exporter.validation import StrictModel, field_rule

__all__ = [
    "HTTPServerConfig",
    "TLSServerConfig",
    "WebConfig",
    "build_server_ssl_context",
    "load_web_config",
]

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# exporter-toolkit fields with no equivalent here: refused by name rather than ignored,
# so a file written for a Go exporter never silently means less than it says.
_UNSUPPORTED_TLS = {
    "RequestClientCert": "Python's ssl module verifies every client certificate it asks "
    "for; use VerifyClientCertIfGiven",
    "RequireAnyClientCert": "Python's ssl module verifies every client certificate it "
    "asks for; use RequireAndVerifyClientCert",
}
_UNSUPPORTED_TLS_FIELDS = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_ca": "inline CAs are not supported; use client_ca_file",
    "cipher_suites": "not supported: OpenSSL's defaults for the TLS versions allowed apply",
    "curve_preferences": "not supported: OpenSSL's defaults apply",
    "prefer_server_cipher_suites": "not supported: OpenSSL's defaults apply",
    "client_allowed_sans": "not supported",
}
# The response headers exporter-toolkit lets a web config set, and no others.
ALLOWED_HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
)
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")


class TLSServerConfig(StrictModel):
    """`tls_server_config`: serve HTTPS, optionally asking for client certificates."""

    cert_file: str = Field(description="PEM certificate (chain) of the server.")
    key_file: str = Field(description="PEM private key of the server.")
    client_auth_type: str = Field(
        "NoClientCert",
        description="NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert.",
    )
    client_ca_file: str | None = Field(None, description="CAs that sign client certificates.")
    min_version: str = Field("TLS12", description="TLS10, TLS11, TLS12 or TLS13.")
    max_version: str = Field("TLS13", description="TLS10, TLS11, TLS12 or TLS13.")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, why in _UNSUPPORTED_TLS_FIELDS.items():
                if name in data:
                    raise field_rule(name, why)
        return data

    @field_validator("client_auth_type")
    @classmethod
    def _client_auth(cls, value: str) -> str:
        if value in _UNSUPPORTED_TLS:
            raise ValueError(f"{value} is not supported: {_UNSUPPORTED_TLS[value]}")
        if value not in CLIENT_AUTH_TYPES:
            raise ValueError(
                f"unknown client_auth_type {value!r}; known: {', '.join(CLIENT_AUTH_TYPES)}"
            )
        return value

    @field_validator("min_version", "max_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in TLS_VERSIONS:
            raise ValueError(f"unknown TLS version {value!r}; known: {', '.join(TLS_VERSIONS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TLSServerConfig:
        verifies = self.client_auth_type != "NoClientCert"
        if verifies and self.client_ca_file is None:
            raise field_rule(
                "client_ca_file", f"required with client_auth_type {self.client_auth_type}"
            )
        if not verifies and self.client_ca_file is not None:
            raise field_rule(
                "client_auth_type",
                "client_ca_file is set but client_auth_type is NoClientCert: "
                "client certificates would not be checked",
            )
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise field_rule("min_version", f"must not be above max_version ({self.max_version})")
        return self


class HTTPServerConfig(StrictModel):
    """`http_server_config`: extra response headers."""

    http2: bool = Field(False, description="Must be false: the exporter serves HTTP/1.1.")
    headers: dict[str, str] = Field(default_factory=dict, description="Added to every response.")

    @field_validator("http2")
    @classmethod
    def _no_http2(cls, value: bool) -> bool:
        if value:
            raise ValueError("HTTP/2 is not supported: the exporter serves HTTP/1.1")
        return value

    @field_validator("headers")
    @classmethod
    def _known_headers(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = {h.lower(): h for h in ALLOWED_HEADERS}
        for name, text in value.items():
            if name.lower() not in allowed:
                raise ValueError(
                    f"header {name!r} cannot be set; allowed: {', '.join(ALLOWED_HEADERS)}"
                )
            if "\r" in text or "\n" in text:
                raise ValueError(f"header {name!r}: the value must be one line")
        return {allowed[name.lower()]: text for name, text in value.items()}


class WebConfig(StrictModel):
    """The whole web config file."""

    tls_server_config: TLSServerConfig | None = None
    basic_auth_users: dict[str, SecretStr] = Field(
        default_factory=dict, description="User name to bcrypt hash of the password."
    )
    http_server_config: HTTPServerConfig = Field(default_factory=HTTPServerConfig)

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for user, hashed in value.items():
            if not user or ":" in user:
                raise ValueError(f"user name {user!r} must be non-empty and without ':'")
            if not _BCRYPT_HASH.fullmatch(hashed.get_secret_value()):
                # The value itself is never repeated: a hash is still a secret.
                raise ValueError(
                    f"the password of user {user!r} is not a bcrypt hash "
                    "($2a$, $2b$ or $2y$, cost 04-31, 53 characters after it)"
                )
        return value


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file; relative file names in it are relative to
    the file's directory (as in exporter-toolkit). Raises ConfigError naming the field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            str(path), [ConfigProblem("", f"cannot read file: {exc.strerror}")]
        ) from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            str(path), [ConfigProblem("", f"invalid YAML: {where}{problem}")]
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [ConfigProblem("", "the top level must be a mapping")])
    try:
        config = WebConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(str(path), validation_problems(exc, data)) from None
    tls = config.tls_server_config
    if tls is not None:
        base = path.parent
        tls = tls.model_copy(
            update={
                "cert_file": str(base / tls.cert_file),
                "key_file": str(base / tls.key_file),
                "client_ca_file": None
                if tls.client_ca_file is None
                else str(base / tls.client_ca_file),
            }
        )
        config = config.model_copy(update={"tls_server_config": tls})
        # Load the files now: a bad key is a startup error, not a failure per handshake.
        build_server_ssl_context(tls, source=str(path))
    return config


def build_server_ssl_context(
    tls: TLSServerConfig, *, source: str = "<web config>"
) -> ssl.SSLContext:
    """The server-side SSL context; ConfigError names the field whose file does not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            source,
            [
                ConfigProblem(
                    "tls_server_config.cert_file", f"cannot load certificate and key: {exc}"
                )
            ],
        ) from None
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                source,
                [ConfigProblem("tls_server_config.client_ca_file", f"cannot load CAs: {exc}")],
            ) from None
    return context
