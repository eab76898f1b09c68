"""CDS Hooks 2.0 client authentication: the EHR signs a JWT for every call.

Checks, in order: a Bearer token is present, not oversized and well-formed; its
``alg`` is an allowed asymmetric algorithm (never ``none`` or HMAC); its
``iss`` is a trusted issuer; a ``jku`` header is on that issuer's allow-list
(else the token is refused and nothing is fetched); the key is found by
``kid`` among the issuer's keys (inline in the trust file, or fetched from the
allowed JWKS URL with a timeout, cached, and re-fetched on an unknown ``kid``
at most once a minute per URL); key type and curve fit ``alg``; the
signature; ``aud`` equals one of the configured public base URLs + the path
called (scheme and host compared case-insensitively, default ports ignored; the
Host header is never used); ``exp``/``iat`` within a small clock skew and a
bounded lifetime; ``sub`` only where the issuer names allowed client ids (CDS
Hooks 2.0 requires iss, aud, exp, iat, jti and no sub); ``tenant`` when the
issuer names one; ``jti`` not seen before within the token's lifetime, in a
replay table of the feedback store that every worker and instance shares.

A JWKS fetch runs inside the request's deadline (``outbound.netguard``: DNS,
connect, headers and body all bounded) and holds no lock: a call whose key is
cached never waits for it, and callers needing the same unknown key wait for
the one fetch in flight only until their own deadline.

Failures answer 401 with ``WWW-Authenticate: Bearer`` and no detail; the
reason (a fixed phrase, never text from the token) goes to the access log, and
its category (``Refusal``) is what metrics count.

Trust file (``AZA_CDS_TRUST`` or ``--trust``)::

    {"algorithms": ["ES384", "RS384"],                      # optional; default from the configuration
     "issuers": [
       {"iss": "https://ehr.example.org",
        "jwks_url": "https://ehr.example.org/.well-known/jwks.json"},
       {"iss": "https://other.example.org", "jwks": {"keys": [...]},
        "jku_allow": ["https://other.example.org/jwks"],     # optional: jku values honoured
        "tenant": "optional", "sub": ["optional client ids"], "algorithms": ["ES256"],
        "fhir_servers": ["https://other.example.org/fhir"]}]}   # optional FHIR allow-list

``fhir_servers``: the FHIR base URLs this issuer's calls may name in ``fhirServer``
(then any address, private ones included, is allowed for them and nothing else is);
without it, any http(s) URL on a public address (``outbound.netguard``).

Keys whose name starts with ``_`` (``_comment``) are ignored.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from datetime import datetime, timezone
from enum import Enum

import jwt
import requests
import urllib3
from flask import Request, g

from outbound import netguard
from outbound.fhir_client import Deadline, read_limited, FhirError

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
JWKS_TIMEOUT = (1.0, 2.0)  # connect, read (each cut to what is left of the request's deadline)


class Refusal(str, Enum):
    """Why a token was refused: the categories logs and metrics count (one place)."""

    MISSING = "missing"
    MALFORMED = "malformed"
    ALGORITHM = "algorithm"
    ISSUER = "issuer"
    KEY = "key"
    SIGNATURE = "signature"
    CLAIMS = "claims"
    AUDIENCE = "audience"
    EXPIRED = "expired"
    LIFETIME = "lifetime"
    SUBJECT = "subject"
    TENANT = "tenant"
    REPLAY = "replay"
    ERROR = "error"


class AuthError(Exception):
    """A token was refused. ``reason`` is a fixed phrase, safe to log; ``refusal`` its category."""

    def __init__(self, reason: str, refusal: Refusal = Refusal.CLAIMS) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refusal = refusal


class ReplayStoreDown(Exception):
    """The shared replay table cannot be reached: no token can be checked for reuse (503)."""


# Listeners called with (Refusal,) for each refused token (metrics hook in here).
REFUSAL_LISTENERS: list[Callable[[Refusal], None]] = []


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
    fhir_servers: tuple[str, ...] = ()  # FHIR base URLs its calls may name (empty: public addresses)
    inline_keys: dict[str, Key] = field(default_factory=dict)
    _keys: dict[str, dict[str, Key]] = field(default_factory=dict)  # JWKS URL -> kid -> key
    _fetched: dict[str, float] = field(default_factory=dict)  # JWKS URL -> monotonic time of the last fetch
    _inflight: dict[str, threading.Event] = field(default_factory=dict)  # JWKS URL -> set when its fetch ends
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


def _check_fhir_base(url: str, what: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query or parts.fragment:
        raise ValueError(f"{what} must be http(s) base URLs without userinfo, query or fragment (got {url!r})")
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
        fhir_servers = tuple(_check_fhir_base(u, f"{at}.fhir_servers")
                             for u in _strings(spec.get("fhir_servers"), f"{at}.fhir_servers"))
        issuer = Issuer(iss=iss, jwks_url=jwks_url, jwks=jwks, jku_allow=jku_allow, tenant=tenant,
                        subjects=_strings(spec.get("sub"), f"{at}.sub"),
                        algorithms=_algorithms(spec.get("algorithms"), at), fhir_servers=fhir_servers)
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
    """(iss, jti) seen within the token's lifetime, in this process only (``Authenticator``'s
    default when built by hand; the app uses ``StoreReplayCache``, shared by all workers)."""

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


class StoreReplayCache:
    """The replay table of the feedback store (``cds_jti``): shared by every worker and instance
    that uses the same database, so a token is accepted once in all of them."""

    def __init__(self, store) -> None:
        self.store = store

    def check_and_add(self, iss: str, jti: str, until: float) -> bool:
        from .storage import StorageError

        try:
            return self.store.claim_jti(iss, jti, datetime.fromtimestamp(until, timezone.utc))
        except StorageError:
            raise ReplayStoreDown() from None


# ------------------------------------------------------------------ audience

_UNRESERVED_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _normalised_path(path: str) -> str:
    """RFC 3986 6.2.2.1-2: percent-escapes in upper case, escaped unreserved characters decoded.
    Nothing else (dot segments stay, so a path with them simply does not match)."""
    def one(m: re.Match) -> str:
        char = chr(int(m.group(1), 16))
        return char if char.isascii() and (char.isalnum() or char in "-._~") else "%" + m.group(1).upper()

    return _UNRESERVED_ESCAPE.sub(one, path)


def _origin_and_path(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of an ``aud`` or a configured URL, normalised only as RFC 3986
    section 6.2.2-6.2.3 allows (scheme and host case, the default port, percent-encoding); None
    for anything else, which then matches nothing: userinfo, a query or a fragment (even empty:
    ``?`` or ``#``), whitespace or a backslash anywhere."""
    if not isinstance(url, str) or not url or any(c.isspace() or c == "\\" for c in url):
        return None
    if "?" in url or "#" in url:
        return None
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        default = {"http": 80, "https": 443}.get(scheme)
        port = parts.port or default or 0
    except (ValueError, AttributeError):
        return None
    if not default or not parts.hostname or "@" in parts.netloc:
        return None
    # the trailing slash of the path is not significant here (configured base URLs are kept without one)
    return scheme, parts.hostname.lower(), port, _normalised_path(parts.path).rstrip("/")


def public_base_urls(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``AZA_CDS_PUBLIC_BASE_URL``: one URL, or several (a list, or separated by commas or spaces)."""
    text = value if isinstance(value, str) else " ".join(value or ())
    urls = tuple(u.strip().rstrip("/") for u in text.replace(",", " ").split() if u.strip())
    for u in urls:
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.hostname or _origin_and_path(u) is None:
            raise ValueError(f"public base URL must be an http(s) URL without userinfo, query or fragment (got {u!r})")
    return urls


# ------------------------------------------------------------------ authenticator

def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Authenticator:
    def __init__(self, *, required: bool, issuers: list[Issuer] | None = None,
                 algorithms: tuple[str, ...] = ("ES384", "RS384"), leeway: int = 30,
                 public_base_url: str | Iterable[str] | None = None, session: requests.Session | None = None,
                 replay=None, jwks_deadline_seconds: float = 1.5) -> None:
        self.required = required
        self.issuers = {i.iss: i for i in (issuers or [])}
        bad = set(algorithms) - SUPPORTED_ALGORITHMS
        if bad:
            raise ValueError(f"algorithms not allowed: {sorted(bad)}")
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.public_base_urls = public_base_urls(public_base_url)
        if required and not self.public_base_urls:
            raise ValueError("JWT authentication needs the service's public base URL (AZA_CDS_PUBLIC_BASE_URL, "
                             "e.g. https://cds.example.org): a token's aud is compared with it, never with the "
                             "Host header a caller sends")
        self.session = session or netguard.guarded_session()
        self.session.trust_env = False
        self.replay = replay if replay is not None else ReplayCache()
        self.jwks_deadline_seconds = jwks_deadline_seconds

    @classmethod
    def from_config(cls, cfg, store=None) -> "Authenticator":
        if not cfg.auth_required:
            return cls(required=False)
        issuers, algorithms = load_trust_file(cfg.trust) if cfg.trust else ([], None)
        if not issuers:
            log.warning("no trusted issuers configured: every service call will be refused",
                        extra={"event": "auth-config"})
        return cls(required=True, issuers=issuers, algorithms=algorithms or tuple(cfg.jwt_algorithms),
                   leeway=cfg.jwt_leeway_seconds, public_base_url=cfg.public_base_url,
                   replay=StoreReplayCache(store) if store is not None else None,
                   jwks_deadline_seconds=cfg.fhir_deadline)

    # -------------------------------------------------------------- flask
    def check(self, request: Request, deadline: Deadline | None = None) -> "Issuer | None":
        """Verify the call's token; returns its issuer (None when auth is off). Raises ApiError."""
        if not self.required:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        deadline = deadline or Deadline(self.jwks_deadline_seconds)
        try:
            if scheme.lower() != "bearer" or not token:
                raise AuthError("missing bearer token", Refusal.MISSING)
            if len(token) > MAX_TOKEN_BYTES:
                raise AuthError("token too large", Refusal.MALFORMED)
            claims = self.verify(token, self.expected_audiences(request), deadline)
        except AuthError as exc:
            self._refuse(exc.reason, exc.refusal)
        except ReplayStoreDown:
            g.auth_failure = "replay store unavailable"
            raise ApiError(503, "The service cannot check tokens now; try again shortly",
                           headers={"Retry-After": "5"}) from None
        except Exception as exc:  # a bug here must not become a 500 or a pass
            log.error("token verification failed unexpectedly", extra={"event": "auth", "error": type(exc).__name__})
            self._refuse(f"verification error ({type(exc).__name__})", Refusal.ERROR)
        return self.issuers[claims["iss"]]

    @staticmethod
    def _refuse(reason: str, refusal: Refusal) -> None:
        g.auth_failure = reason  # the access log line carries it; never the token
        g.auth_refusal = refusal.value
        for listener in REFUSAL_LISTENERS:
            try:
                listener(refusal)
            except Exception:  # noqa: BLE001 - a metrics bug must not change the answer
                pass
        raise ApiError(401, "Authentication required", headers={"WWW-Authenticate": 'Bearer realm="cds-services"'})

    def expected_audiences(self, request: Request) -> list[str]:
        """The configured public base URL(s) + the path called; never the Host header."""
        return [base + request.path for base in self.public_base_urls]

    # ------------------------------------------------------------- verify
    def verify(self, token: str, audience: str | list[str], deadline: Deadline | None = None) -> dict:
        deadline = deadline or Deadline(self.jwks_deadline_seconds)
        try:
            # header and claims in one decoding (the same checks as get_unverified_header + decode)
            unverified_token = jwt.decode_complete(token, options={"verify_signature": False})
            header, unverified = unverified_token["header"], unverified_token["payload"]
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthError("malformed token", Refusal.MALFORMED) from None
        alg = header.get("alg")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        allowed = (issuer.algorithms if issuer and issuer.algorithms else None) or self.algorithms
        if not isinstance(alg, str) or alg not in allowed:
            shown = alg if isinstance(alg, str) and alg in KNOWN_JWA else "unrecognised"
            raise AuthError(f"algorithm {shown} not allowed", Refusal.ALGORITHM)
        if issuer is None:
            raise AuthError("untrusted issuer", Refusal.ISSUER)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("no kid in header", Refusal.KEY)
        key = self._key(issuer, header.get("jku", None), "jku" in header, kid, deadline)
        if not key.fits(alg):
            raise AuthError("key type does not fit the algorithm", Refusal.KEY)
        required = ["iss", "aud", "exp", "iat", "jti"] + (["sub"] if issuer.subjects else [])
        try:
            claims = jwt.decode(
                token, key=key.key, algorithms=[alg], issuer=iss, leeway=self.leeway,
                options={"require": required, "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", Refusal.EXPIRED) from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid (iat/nbf in the future)", Refusal.EXPIRED) from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad signature", Refusal.SIGNATURE) from None
        except jwt.MissingRequiredClaimError as exc:
            claim = exc.claim if exc.claim in ("iss", "sub", "aud", "exp", "iat", "jti") else "?"
            raise AuthError(f"missing claim {claim}", Refusal.CLAIMS) from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token ({type(exc).__name__})", Refusal.CLAIMS) from None
        self._check_claims(claims, issuer, [audience] if isinstance(audience, str) else audience)
        return claims

    def _check_claims(self, claims: dict, issuer: Issuer, audiences: list[str]) -> None:
        aud = claims["aud"]
        auds = aud if isinstance(aud, list) else [aud]
        expected = {_origin_and_path(a) for a in audiences} - {None}
        if not any(isinstance(a, str) and _origin_and_path(a) in expected for a in auds):
            raise AuthError("audience does not match the called URL", Refusal.AUDIENCE)
        exp, iat = claims["exp"], claims["iat"]
        if not _number(exp) or not _number(iat):
            raise AuthError("exp and iat must be numbers", Refusal.CLAIMS)
        now = time.time()
        if exp - now > MAX_LIFETIME_SECONDS or exp - iat > MAX_LIFETIME_SECONDS:
            raise AuthError("token lifetime too long", Refusal.LIFETIME)
        if exp < iat:
            raise AuthError("token expires before it was issued", Refusal.LIFETIME)
        if issuer.subjects:  # CDS Hooks 2.0 has no sub; required only where the issuer names client ids
            sub = claims.get("sub")
            if not isinstance(sub, str) or not sub:
                raise AuthError("invalid sub", Refusal.SUBJECT)
            if sub not in issuer.subjects:
                raise AuthError("sub not allowed for this issuer", Refusal.SUBJECT)
        if issuer.tenant is not None and claims.get("tenant") != issuer.tenant:
            raise AuthError("tenant mismatch", Refusal.TENANT)
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise AuthError("invalid jti", Refusal.CLAIMS)
        if not self.replay.check_and_add(issuer.iss, jti, float(exp) + self.leeway):
            raise AuthError("token replayed (jti seen before)", Refusal.REPLAY)

    # --------------------------------------------------------------- keys
    def _key(self, issuer: Issuer, jku: Any, has_jku: bool, kid: str, deadline: Deadline) -> Key:
        if has_jku:
            if not isinstance(jku, str) or not issuer.allows_jku(jku):
                raise AuthError("jku not on the issuer's allow-list", Refusal.KEY)  # never fetched
        if kid in issuer.inline_keys:
            return issuer.inline_keys[kid]
        source = jku if has_jku else issuer.jwks_url
        if source:
            key = self._remote_key(issuer, source, kid, deadline)
            if key is not None:
                return key
        raise AuthError("unknown kid", Refusal.KEY)

    def _remote_key(self, issuer: Issuer, source: str, kid: str, deadline: Deadline) -> Key | None:
        """A cached key at once; else one fetch per URL at a time (at most one a minute), done by
        the first caller in its own request's deadline with no lock held. Others needing it wait
        for that fetch, but only until their own deadline."""
        with issuer._lock:
            keys = issuer._keys.get(source)
            if keys is not None and kid in keys:
                return keys[kid]
            running = issuer._inflight.get(source)
            mine = False
            if running is None:
                last = issuer._fetched.get(source)
                if last is not None and time.monotonic() - last < JWKS_REFRESH_SECONDS:
                    return None
                issuer._fetched[source] = time.monotonic()  # failures count too: at most one fetch a minute
                running = issuer._inflight[source] = threading.Event()
                mine = True
        if mine:
            try:
                fetched = self._fetch_jwks(source, deadline)
                with issuer._lock:
                    if fetched is not None:
                        issuer._keys[source] = fetched
            finally:
                with issuer._lock:
                    issuer._inflight.pop(source, None)
                running.set()
        else:
            running.wait(max(deadline.remaining(), 0.0))
        with issuer._lock:
            return (issuer._keys.get(source) or {}).get(kid)

    def _fetch_jwks(self, url: str, deadline: Deadline) -> dict[str, Key] | None:
        try:
            # the URL comes from the trust file (jwks_url, or a jku on its allow-list): the admin named it
            policy = netguard.EgressPolicy(allowed_bases=(url,)).check_url(url)
            timeout = deadline.timeout(JWKS_TIMEOUT[0])
            with netguard.guarded(policy, deadline.end, JWKS_TIMEOUT[0]), \
                    self.session.get(url, timeout=(timeout[0], min(timeout[1], JWKS_TIMEOUT[1])),
                                     allow_redirects=False, stream=True,
                                     headers={"Accept": "application/json", "Accept-Encoding": "gzip"}) as resp:
                resp.raise_for_status()
                if resp.status_code != 200:
                    raise ValueError("JWKS answer is not 200")
                body = read_limited(resp, deadline, MAX_JWKS_BYTES)
            keys = parse_jwks(json.loads(body))
        except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError, OSError, FhirError,
                netguard.EgressRefused, RecursionError) as exc:
            log.warning("JWKS could not be fetched", extra={"event": "jwks", "error": type(exc).__name__})
            return None
        log.info("JWKS fetched", extra={"event": "jwks"})
        return keys
