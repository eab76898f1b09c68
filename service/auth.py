"""CDS Hooks 2.0 client authentication: the EHR signs a JWT per call.

Checks, in order: a Bearer token is present and well-formed; its ``alg`` is an
allowed asymmetric algorithm (never ``none`` or HMAC); its ``iss`` is a trusted
issuer; a ``jku`` header is on that issuer's allow-list; the key is found by
``kid`` in the issuer's JWKS (inline, or fetched with a timeout, cached, and
refreshed on an unknown ``kid`` at most once a minute); the signature; ``aud``
equals the URL that was called (or the configured public base URL + path);
``exp``/``iat`` within a small clock skew and a bounded lifetime; ``jti`` not
seen before (replay cache); ``tenant`` when the issuer names one.

Failures answer 401 with ``WWW-Authenticate: Bearer`` and no detail; the
reason goes to the log, never the token.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import requests
from flask import Request, g

from .errors import ApiError

log = logging.getLogger("aza_cds.auth")

OPTIONAL_ALGORITHMS = {"ES256", "RS256"}
SUPPORTED_ALGORITHMS = {"ES384", "RS384"} | OPTIONAL_ALGORITHMS
MAX_LIFETIME_SECONDS = 3600  # CDS Hooks suggests ~5 minutes; longer-lived tokens are refused
JWKS_REFRESH_SECONDS = 60
JWKS_TIMEOUT = (1.0, 2.0)


class AuthError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Issuer:
    iss: str
    jwks_url: str | None = None
    jwks: dict | None = None  # inline
    jku_allow: tuple[str, ...] = ()
    tenant: str | None = None
    _keys: dict[str, dict[str, tuple]] = field(default_factory=dict)  # jwks url ("" inline) -> kid -> (key, alg)
    _fetched: dict[str, float] = field(default_factory=dict)


def load_trust(path: str) -> list[Issuer]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read trust file {path}: {exc}") from None
    issuers = []
    for i, spec in enumerate(raw.get("issuers") or []):
        if not isinstance(spec, dict) or not isinstance(spec.get("iss"), str):
            raise ValueError(f"trust file {path}: issuers[{i}] needs 'iss'")
        if not spec.get("jwks_url") and not isinstance(spec.get("jwks"), dict):
            raise ValueError(f"trust file {path}: issuer {spec['iss']} needs 'jwks_url' or 'jwks'")
        issuers.append(Issuer(iss=spec["iss"], jwks_url=spec.get("jwks_url"), jwks=spec.get("jwks"),
                              jku_allow=tuple(spec.get("jku_allow") or ()), tenant=spec.get("tenant")))
    return issuers


class ReplayCache:
    """(iss, jti) seen within the token's lifetime. Per process."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def check_and_add(self, iss: str, jti: str, exp: float) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) > 10000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            key = (iss, jti)
            if key in self._seen and self._seen[key] > now:
                return False
            self._seen[key] = exp
            return True


class Authenticator:
    def __init__(self, *, required: bool, issuers: list[Issuer] | None = None,
                 algorithms: tuple[str, ...] = ("ES384", "RS384"), leeway: int = 30,
                 public_base_url: str | None = None, session: requests.Session | None = None) -> None:
        self.required = required
        self.issuers = {i.iss: i for i in (issuers or [])}
        bad = set(algorithms) - SUPPORTED_ALGORITHMS
        if bad:
            raise ValueError(f"algorithms not allowed: {sorted(bad)}")
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.session = session or requests.Session()
        self.session.trust_env = False
        self.replay = ReplayCache()
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg) -> "Authenticator":
        if not cfg.auth_required:
            return cls(required=False)
        issuers = load_trust(cfg.trust_file) if cfg.trust_file else []
        if not issuers:
            log.warning("no trusted issuers configured: every service call will be refused",
                        extra={"event": "auth-config"})
        return cls(required=True, issuers=issuers, algorithms=cfg.jwt_algorithms, leeway=cfg.jwt_leeway_seconds,
                   public_base_url=cfg.public_base_url)

    # -------------------------------------------------------------- flask
    def check(self, request: Request) -> None:
        if not self.required:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("missing bearer token")
            self.verify(token.strip(), self.expected_audience(request))
        except AuthError as exc:
            g.auth_failure = exc.reason
            log.info("authentication failed", extra={"event": "auth", "reason": exc.reason})
            raise ApiError(401, "Authentication required", headers={"WWW-Authenticate": 'Bearer realm="cds-services"'}) from None

    def expected_audience(self, request: Request) -> str:
        if self.public_base_url:
            return self.public_base_url + request.path
        return request.base_url

    # ------------------------------------------------------------- verify
    def verify(self, token: str, audience: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError(f"algorithm {alg!r} not allowed")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError("untrusted issuer")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("no kid in header")
        jku = header.get("jku")
        if jku is not None:
            if not isinstance(jku, str) or (jku not in issuer.jku_allow and jku != issuer.jwks_url):
                raise AuthError("jku not on the issuer's allow-list")
            source = jku
        else:
            source = issuer.jwks_url or ""
        key, key_alg = self._key(issuer, source, kid)
        if key_alg is not None and key_alg != alg:
            raise AuthError("key algorithm mismatch")
        try:
            claims = jwt.decode(
                token, key=key, algorithms=[alg], issuer=iss, leeway=self.leeway,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token issued in the future") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"missing claim {exc.claim}") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token ({type(exc).__name__})") from None
        aud = claims["aud"]
        auds = aud if isinstance(aud, list) else [aud]
        if audience.rstrip("/") not in [a.rstrip("/") for a in auds if isinstance(a, str)]:
            raise AuthError("audience does not match the called URL")
        now = time.time()
        if not isinstance(claims["iat"], (int, float)) or claims["exp"] - now > MAX_LIFETIME_SECONDS:
            raise AuthError("token lifetime too long")
        if issuer.tenant is not None and claims.get("tenant") != issuer.tenant:
            raise AuthError("tenant mismatch")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise AuthError("invalid jti")
        if not self.replay.check_and_add(iss, claims["jti"], float(claims["exp"]) + self.leeway):
            raise AuthError("token replayed (jti seen before)")
        return claims

    def _key(self, issuer: Issuer, source: str, kid: str) -> tuple:
        keys = issuer._keys.get(source)
        if keys is None or (kid not in keys and source and self._may_refresh(issuer, source)):
            keys = self._load_keys(issuer, source)
        if kid not in keys:
            raise AuthError("unknown kid")
        return keys[kid]

    def _may_refresh(self, issuer: Issuer, source: str) -> bool:
        return time.monotonic() - issuer._fetched.get(source, -1e9) >= JWKS_REFRESH_SECONDS

    def _load_keys(self, issuer: Issuer, source: str) -> dict[str, tuple]:
        with self._lock:
            if source:
                if not self._may_refresh(issuer, source) and source in issuer._keys:
                    return issuer._keys[source]
                issuer._fetched[source] = time.monotonic()
                try:
                    resp = self.session.get(source, timeout=JWKS_TIMEOUT, allow_redirects=False)
                    resp.raise_for_status()
                    jwks = resp.json()
                except (requests.RequestException, ValueError):
                    log.warning("JWKS could not be fetched", extra={"event": "jwks", "reason": "fetch failed"})
                    return issuer._keys.get(source, {})
            else:
                jwks = issuer.jwks or {}
            keys = {}
            for raw in jwks.get("keys") or [] if isinstance(jwks, dict) else []:
                if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
                    continue
                if raw.get("kty") not in ("EC", "RSA"):
                    continue  # never symmetric keys
                try:
                    keys[raw["kid"]] = (jwt.PyJWK(raw).key, raw.get("alg"))
                except jwt.PyJWTError:
                    continue
            issuer._keys[source] = keys
            return keys
