"""CDS Hooks 2.0 client authentication: the EHR signs a JWT for every call.

Checks, in order: a Bearer token is present, not oversized and well-formed; its
``alg`` is an allowed asymmetric algorithm (never ``none`` or HMAC); its
``iss`` is a trusted issuer; a ``jku`` header is on that issuer's allow-list
(else the token is refused and nothing is fetched); the key is found by
``kid`` among the issuer's keys (inline in the trust file, or fetched from the
allowed JWKS URL with a timeout, cached, and re-fetched on an unknown ``kid``
at most once a minute per URL); key type and curve fit ``alg``; the
signature; ``aud`` equals the URL that was called (or the configured public
base URL + path); ``exp``/``iat`` within a small clock skew and a bounded
lifetime; ``sub`` and ``tenant`` when the issuer names them; ``jti`` not seen
before within the token's lifetime (replay cache, per process).

Failures answer 401 with ``WWW-Authenticate: Bearer`` and no detail; the
reason (a fixed phrase, never text from the token) goes to the access log.

Trust file (``AZA_CDS_TRUST`` or ``--trust``)::

    {"algorithms": ["ES384", "RS384"],                      # optional; default from the configuration
     "issuers": [
       {"iss": "https://ehr.example.org",
        "jwks_url": "https://ehr.example.org/.well-known/jwks.json"},
       {"iss": "https://other.example.org", "jwks": {"keys": [...]},
        "jku_allow": ["https://other.example.org/jwks"],     # optional: jku values honoured
        "tenant": "optional", "sub": ["optional client ids"], "algorithms": ["ES256"]}]}

Keys whose name starts with ``_`` (``_comment``) are ignored.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
import urllib3
from flask import Request, g

from .errors import ApiError

log = logging.getLogger("aza_cds.auth")

OPTIONAL_ALGORITHMS = {"ES256", "RS256"}
SUPPORTED_ALGORITHMS = {"ES384", "RS384"} | OPTIONAL_ALGORITHMS
KNOWN_JWA = SUPPORTED_ALGORITHMS | {"none", "HS256", "HS384", "HS512", "RS512", "ES512", "ES256K", "PS256", "PS384",
                                    "PS512", "EdDSA"}  # named in logs; anything else is "unrecognised"
_CURVES = {"ES256": "P-256", "ES384": "P-384"}
MAX_LIFETIME_SECONDS = 3600  # CDS Hooks suggests ~5 minutes; longer-lived tokens are refused
MAX_TOKEN_BYTES = 16 * 1024
MAX_JWKS_BYTES = 256 * 1024
MIN_RSA_BITS = 2048
JWKS_REFRESH_SECONDS = 60
JWKS_TIMEOUT = (1.0, 2.0)  # connect, read


class AuthError(Exception):
    """A token was refused. ``reason`` is a fixed phrase, safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Key:
    key: Any  # a cryptography public key
    kty: str  # "EC" | "RSA"
    crv: str | None
    alg: str | None  # the JWK's own "alg", when it names one

    def fits(self, alg: str) -> bool:
        if self.alg is not None and self.alg != alg:
            return False
        if alg.startswith("ES"):
            return self.kty == "EC" and self.crv == _CURVES.get(alg)
        return alg.startswith("RS") and self.kty == "RSA"


@dataclass
class Issuer:
    iss: str
    jwks_url: str | None = None
    jwks: dict | None = None  # inline JWK Set, trusted out of band
    jku_allow: tuple[str, ...] = ()
    tenant: str | None = None
    subjects: tuple[str, ...] = ()  # allowed "sub" (client ids); empty: any
    algorithms: tuple[str, ...] | None = None  # overrides the service-wide list
    inline_keys: dict[str, Key] = field(default_factory=dict)
    _keys: dict[str, dict[str, Key]] = field(default_factory=dict)  # JWKS URL -> kid -> key
    _fetched: dict[str, float] = field(default_factory=dict)  # JWKS URL -> monotonic time of the last fetch
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.jwks is not None and not self.inline_keys:
            self.inline_keys = parse_jwks(self.jwks)

    def allows_jku(self, jku: str) -> bool:
        return jku in self.jku_allow or (self.jwks_url is not None and jku == self.jwks_url)


# ------------------------------------------------------------------ trust file

def _check_url(url: Any, what: str) -> str:
    if not isinstance(url, str) or not url:
        raise ValueError(f"{what} must be a URL")
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ValueError(f"{what} must be an https URL (got {url!r})")
    return url


def _algorithms(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise ValueError(f"{where}: 'algorithms' must be a non-empty list of names")
    bad = set(value) - SUPPORTED_ALGORITHMS
    if bad:
        raise ValueError(f"{where}: algorithms not allowed: {sorted(bad)} (allowed: {sorted(SUPPORTED_ALGORITHMS)})")
    return tuple(value)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where} must be a string or a list of strings")
    return tuple(value)


def parse_trust(raw: Any, where: str = "trust file") -> tuple[list[Issuer], tuple[str, ...] | None]:
    """Issuers and the file-wide algorithm list (None: use the configuration's)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("issuers"), list):
        raise ValueError(f"{where}: expected an object with an 'issuers' list")
    algorithms = _algorithms(raw.get("algorithms"), where)
    issuers: list[Issuer] = []
    seen: set[str] = set()
    for i, spec in enumerate(raw["issuers"]):
        at = f"{where}: issuers[{i}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("iss"), str) or not spec["iss"]:
            raise ValueError(f"{at} needs 'iss'")
        iss = spec["iss"]
        if iss in seen:
            raise ValueError(f"{at}: issuer {iss} is listed twice")
        seen.add(iss)
        jwks_url = spec.get("jwks_url")
        jwks = spec.get("jwks")
        if jwks_url is None and jwks is None:
            raise ValueError(f"{at}: issuer {iss} needs 'jwks_url' or 'jwks'")
        if jwks_url is not None:
            _check_url(jwks_url, f"{at}.jwks_url")
        if jwks is not None and (not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list)):
            raise ValueError(f"{at}.jwks must be a JWK Set ({{\"keys\": [...]}})")
        jku_allow = tuple(_check_url(u, f"{at}.jku_allow") for u in _strings(spec.get("jku_allow"), f"{at}.jku_allow"))
        tenant = spec.get("tenant")
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise ValueError(f"{at}.tenant must be a string")
        issuer = Issuer(iss=iss, jwks_url=jwks_url, jwks=jwks, jku_allow=jku_allow, tenant=tenant,
                        subjects=_strings(spec.get("sub"), f"{at}.sub"),
                        algorithms=_algorithms(spec.get("algorithms"), at))
        if jwks is not None and not issuer.inline_keys:
            raise ValueError(f"{at}.jwks holds no usable EC or RSA signing key with a 'kid'")
        issuers.append(issuer)
    return issuers, algorithms


def load_trust(path: str) -> list[Issuer]:
    return load_trust_file(path)[0]


def load_trust_file(path: str) -> tuple[list[Issuer], tuple[str, ...] | None]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read trust file {path}: {exc}") from None
    return parse_trust(raw, f"trust file {path}")


def parse_jwks(jwks: Any) -> dict[str, Key]:
    """Signing keys of a JWK Set by ``kid``: EC (P-256, P-384) and RSA (>= 2048 bits) only, never symmetric."""
    keys: dict[str, Key] = {}
    raw_keys = jwks.get("keys") if isinstance(jwks, dict) else None
    for raw in raw_keys if isinstance(raw_keys, list) else []:
        if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str) or not raw["kid"]:
            continue
        kty, crv, alg = raw.get("kty"), raw.get("crv"), raw.get("alg")
        if kty not in ("EC", "RSA") or raw.get("use") not in (None, "sig"):
            continue
        if alg is not None and alg not in SUPPORTED_ALGORITHMS:
            continue
        if kty == "EC" and crv not in _CURVES.values():
            continue
        if "d" in raw or "p" in raw:
            continue  # a private key has no place in a trust store
        try:
            key = jwt.PyJWK(raw).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        if kty == "RSA" and getattr(key, "key_size", 0) < MIN_RSA_BITS:
            continue
        keys[raw["kid"]] = Key(key=key, kty=kty, crv=crv if kty == "EC" else None, alg=alg)
    return keys


# ------------------------------------------------------------------ replay cache

class ReplayCache:
    """(iss, jti) seen within the token's lifetime. Per process."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries

    def check_and_add(self, iss: str, jti: str, until: float) -> bool:
        """False if (iss, jti) was seen and has not expired; else remember it until ``until``."""
        now = time.time()
        with self._lock:
            if len(self._seen) >= self.max_entries:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
                if len(self._seen) >= self.max_entries:
                    return False  # refuse rather than forget live jtis
            key = (iss, jti)
            if self._seen.get(key, 0.0) > now:
                return False
            self._seen[key] = until
            return True


# ------------------------------------------------------------------ authenticator

def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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

    @classmethod
    def from_config(cls, cfg) -> "Authenticator":
        if not cfg.auth_required:
            return cls(required=False)
        issuers, algorithms = load_trust_file(cfg.trust_file) if cfg.trust_file else ([], None)
        if not issuers:
            log.warning("no trusted issuers configured: every service call will be refused",
                        extra={"event": "auth-config"})
        return cls(required=True, issuers=issuers, algorithms=algorithms or tuple(cfg.jwt_algorithms),
                   leeway=cfg.jwt_leeway_seconds, public_base_url=cfg.public_base_url)

    # -------------------------------------------------------------- flask
    def check(self, request: Request) -> None:
        if not self.required:
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        try:
            if scheme.lower() != "bearer" or not token:
                raise AuthError("missing bearer token")
            if len(token) > MAX_TOKEN_BYTES:
                raise AuthError("token too large")
            self.verify(token, self.expected_audience(request))
        except AuthError as exc:
            self._refuse(exc.reason)
        except Exception as exc:  # a bug here must not become a 500 or a pass
            log.error("token verification failed unexpectedly", extra={"event": "auth", "error": type(exc).__name__})
            self._refuse(f"verification error ({type(exc).__name__})")

    @staticmethod
    def _refuse(reason: str) -> None:
        g.auth_failure = reason  # the access log line carries it; never the token
        raise ApiError(401, "Authentication required", headers={"WWW-Authenticate": 'Bearer realm="cds-services"'})

    def expected_audience(self, request: Request) -> str:
        if self.public_base_url:
            return self.public_base_url + request.path
        return request.base_url

    # ------------------------------------------------------------- verify
    def verify(self, token: str, audience: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        allowed = (issuer.algorithms if issuer and issuer.algorithms else None) or self.algorithms
        if not isinstance(alg, str) or alg not in allowed:
            shown = alg if isinstance(alg, str) and alg in KNOWN_JWA else "unrecognised"
            raise AuthError(f"algorithm {shown} not allowed")
        if issuer is None:
            raise AuthError("untrusted issuer")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("no kid in header")
        key = self._key(issuer, header.get("jku", None), "jku" in header, kid)
        if not key.fits(alg):
            raise AuthError("key type does not fit the algorithm")
        try:
            claims = jwt.decode(
                token, key=key.key, algorithms=[alg], issuer=iss, leeway=self.leeway,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid (iat/nbf in the future)") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            claim = exc.claim if exc.claim in ("iss", "sub", "aud", "exp", "iat", "jti") else "?"
            raise AuthError(f"missing claim {claim}") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token ({type(exc).__name__})") from None
        self._check_claims(claims, issuer, audience)
        return claims

    def _check_claims(self, claims: dict, issuer: Issuer, audience: str) -> None:
        aud = claims["aud"]
        auds = aud if isinstance(aud, list) else [aud]
        if audience.rstrip("/") not in [a.rstrip("/") for a in auds if isinstance(a, str)]:
            raise AuthError("audience does not match the called URL")
        exp, iat = claims["exp"], claims["iat"]
        if not _number(exp) or not _number(iat):
            raise AuthError("exp and iat must be numbers")
        now = time.time()
        if exp - now > MAX_LIFETIME_SECONDS or exp - iat > MAX_LIFETIME_SECONDS:
            raise AuthError("token lifetime too long")
        if exp < iat:
            raise AuthError("token expires before it was issued")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid sub")
        if issuer.subjects and sub not in issuer.subjects:
            raise AuthError("sub not allowed for this issuer")
        if issuer.tenant is not None and claims.get("tenant") != issuer.tenant:
            raise AuthError("tenant mismatch")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise AuthError("invalid jti")
        if not self.replay.check_and_add(issuer.iss, jti, float(exp) + self.leeway):
            raise AuthError("token replayed (jti seen before)")

    # --------------------------------------------------------------- keys
    def _key(self, issuer: Issuer, jku: Any, has_jku: bool, kid: str) -> Key:
        if has_jku:
            if not isinstance(jku, str) or not issuer.allows_jku(jku):
                raise AuthError("jku not on the issuer's allow-list")  # never fetched
        if kid in issuer.inline_keys:
            return issuer.inline_keys[kid]
        source = jku if has_jku else issuer.jwks_url
        if source:
            key = self._remote_key(issuer, source, kid)
            if key is not None:
                return key
        raise AuthError("unknown kid")

    def _remote_key(self, issuer: Issuer, source: str, kid: str) -> Key | None:
        with issuer._lock:
            keys = issuer._keys.get(source)
            if keys is not None and kid in keys:
                return keys[kid]
            last = issuer._fetched.get(source)
            if last is None or time.monotonic() - last >= JWKS_REFRESH_SECONDS:
                issuer._fetched[source] = time.monotonic()  # failures count too: at most one fetch a minute
                fetched = self._fetch_jwks(source)
                if fetched is not None:
                    issuer._keys[source] = fetched
            return (issuer._keys.get(source) or {}).get(kid)

    def _fetch_jwks(self, url: str) -> dict[str, Key] | None:
        try:
            with self.session.get(url, timeout=JWKS_TIMEOUT, allow_redirects=False, stream=True,
                                  headers={"Accept": "application/json"}) as resp:
                resp.raise_for_status()
                body = resp.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError("JWKS too large")
            keys = parse_jwks(json.loads(body))
        except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError, OSError) as exc:
            log.warning("JWKS could not be fetched", extra={"event": "jwks", "error": type(exc).__name__})
            return None
        log.info("JWKS fetched", extra={"event": "jwks"})
        return keys
