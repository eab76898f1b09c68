"""R1 (issue 18): a token's ``aud`` is the configured public URL + the path called, exactly.

Normalised only as RFC 3986 section 6.2 allows (scheme and host case, the default port,
percent-encoding); a query, a fragment or userinfo (even empty) never matches.
"""
from __future__ import annotations

import pytest

from service.auth import _origin_and_path, public_base_urls
from tests.test_auth import AUD, assert_refused, bearer, call, claims, keys, token, trust  # noqa: F401  (fixtures)
from tests.test_auth import app, client  # noqa: F401  (fixtures)


@pytest.mark.parametrize("aud", [AUD + "?x=1", AUD + "?", AUD + "#f", AUD + "#",
                                 "http://u@localhost/cds-services/thiopurine-order-sign",
                                 "http://@localhost/cds-services/thiopurine-order-sign",
                                 "http://u:p@localhost/cds-services/thiopurine-order-sign",
                                 AUD + "/?x=1", " " + AUD, AUD + " ", AUD + "\n",
                                 "http://localhost/cds-services/../cds-services/thiopurine-order-sign",
                                 "http://localhost\\@evil/cds-services/thiopurine-order-sign",
                                 "ftp://localhost/cds-services/thiopurine-order-sign",
                                 "http://localhost:8080/cds-services/thiopurine-order-sign",
                                 "//localhost/cds-services/thiopurine-order-sign"])
def test_an_aud_with_more_than_the_url_is_refused(client, keys, aud):  # noqa: F811
    assert_refused(call(client, bearer(token(keys["es384"], claims(aud=aud)))))


@pytest.mark.parametrize("aud", ["HTTP://LOCALHOST/cds-services/thiopurine-order-sign",
                                 "http://localhost:80/cds-services/thiopurine-order-sign",
                                 "http://localhost:/cds-services/thiopurine-order-sign",
                                 "http://localhost/cds%2Dservices/thiopurine-order-sign",
                                 AUD + "/"])
def test_what_rfc_3986_calls_the_same_url_is_accepted(client, keys, aud):  # noqa: F811
    assert call(client, bearer(token(keys["es384"], claims(aud=aud)))).status_code == 200


def test_a_list_with_one_exact_aud_is_accepted_and_one_with_only_near_misses_is_not(client, keys):  # noqa: F811
    assert call(client, bearer(token(keys["es384"], claims(aud=[AUD + "?x=1", AUD])))).status_code == 200
    assert_refused(call(client, bearer(token(keys["es384"], claims(aud=[AUD + "?x=1", AUD + "#f"])))))


def test_percent_escapes_are_compared_in_normal_form():
    assert _origin_and_path("https://h/a%2fb") == _origin_and_path("https://H/a%2Fb")
    assert _origin_and_path("https://h/%7Ea") == _origin_and_path("https://h/~a")
    assert _origin_and_path("https://h/a%2Fb") != _origin_and_path("https://h/a/b")  # an escaped "/" is not a "/"


@pytest.mark.parametrize("url", ["https://u@cds.example.org", "https://cds.example.org?x=1", "https://cds.example.org#f"])
def test_a_public_base_url_with_userinfo_query_or_fragment_is_a_configuration_error(url):
    with pytest.raises(ValueError):
        public_base_urls(url)
