"""Outbound HTTP: the only code that opens connections to other servers.

- ``outbound.netguard``: where a call may connect (SSRF egress policy), and a deadline no server
  can stall past (DNS, connect, every socket watched).
- ``outbound.fhir_client``: FHIR reads and searches on ``requests`` (public API: a session, a
  transport adapter), bodies inflated as a stream against the call's byte budget.

Below both ``service`` (the JWKS fetch) and ``hooks`` (prefetch gathering); imports neither.
"""
