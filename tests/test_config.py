"""Configuration: one default per setting, one environment variable derived from its name."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.config import Config, ConfigError, env_name, settings
from service.config import _field_types, _parser_for  # noqa: PLC2701 - every declared type must be parseable

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented():
    section = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(AZA_CDS_[A-Z0-9_]+)`", section))
    assert {env for _, env, _, _ in settings()} <= documented
    assert documented <= {env for _, env, _, _ in settings()}, "docs/configuration.md names a variable no setting reads"


def test_every_setting_type_has_a_parser():
    for name, tp in _field_types().items():
        _parser_for(tp)  # raises TypeError for a type from_env could not read
        assert env_name(name) == "AZA_CDS_" + name.upper()


@pytest.mark.parametrize("var,value,field,expected", [
    ("AZA_CDS_TRUST", "/etc/aza/trust.json", "trust", "/etc/aza/trust.json"),
    ("AZA_CDS_FHIR_DEADLINE", "2.5", "fhir_deadline", 2.5),
    ("AZA_CDS_MAX_INFO_CARDS", "3", "max_info_cards", 3),
    ("AZA_CDS_AUTH_REQUIRED", "off", "auth_required", False),
    ("AZA_CDS_DEV", "yes", "dev", True),
    ("AZA_CDS_JWT_ALGORITHMS", "ES384, PS384", "jwt_algorithms", ("ES384", "PS384")),
    ("AZA_CDS_COMMENT_RETENTION_DAYS", "never", "comment_retention_days", None),
    ("AZA_CDS_COMMENT_RETENTION_DAYS", "30", "comment_retention_days", 30),
    ("AZA_CDS_WORKERS", "8", "workers", 8),
    ("AZA_CDS_FHIR_ALLOW_LOOPBACK", "on", "fhir_allow_loopback", True),
    ("AZA_CDS_FHIR_MAX_CALL_BYTES", "1048576", "fhir_max_call_bytes", 1048576),
    ("AZA_CDS_MAX_ENTRIES_PER_KEY", "50", "max_entries_per_key", 50),
    ("AZA_CDS_MAX_QUEUE_SECONDS", "0.5", "max_queue_seconds", 0.5),
    ("AZA_CDS_CLIENT_SECONDS", "4", "client_seconds", 4.0),
    ("AZA_CDS_GUIDELINE", "DPWG", "guideline", "dpwg"),
])
def test_environment_variables_are_parsed_by_type(var, value, field, expected):
    assert getattr(Config.from_env({var: value}), field) == expected


def test_empty_variable_means_default():
    assert Config.from_env({"AZA_CDS_FHIR_DEADLINE": " "}).fhir_deadline == Config().fhir_deadline


@pytest.mark.parametrize("var,value", [("AZA_CDS_FHIR_DEADLINE", "soon"), ("AZA_CDS_AUTH_REQUIRED", "maybe"),
                                       ("AZA_CDS_COMMENT_RETENTION_DAYS", "-3"), ("AZA_CDS_WORKERS", "2.5"),
                                       ("AZA_CDS_GUIDELINE", "nice")])
def test_bad_value_names_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        Config.from_env({var: value})


def test_guideline_is_one_of_the_rule_profiles_also_as_an_override():
    import rules
    from service import config as config_module

    assert config_module.GUIDELINES == rules.GUIDELINES
    with pytest.raises(ConfigError, match="AZA_CDS_GUIDELINE"):
        Config().with_overrides({"guideline": "nice"})


def test_overrides_win_and_unknown_keys_are_refused():
    cfg = Config.from_env({"AZA_CDS_MAX_INFO_CARDS": "3"}).with_overrides({"max_info_cards": 2})
    assert cfg.max_info_cards == 2
    with pytest.raises(ValueError, match="unknown"):
        Config().with_overrides({"no_such_setting": 1})


def test_former_names_are_gone():
    with pytest.raises(ValueError, match="unknown"):
        Config().with_overrides({"fhir_deadline_seconds": 0.5})
    assert not hasattr(Config(), "trust_file")


def test_a_list_setting_given_as_text_is_parsed_like_its_variable():
    urls = ("https://cds.example.org", "https://cds-b.example.org/aza")
    assert Config.from_env({"AZA_CDS_PUBLIC_BASE_URL": "https://cds.example.org, https://cds-b.example.org/aza"}) \
        .public_base_url == urls
    assert Config().with_overrides({"public_base_url": "https://cds.example.org,https://cds-b.example.org/aza"}) \
        .public_base_url == urls
    assert Config().with_overrides({"public_base_url": urls}).public_base_url == urls


def test_nothing_else_reads_the_environment():
    """Settings come from service/config.py only; the service's code never looks at os.environ itself."""
    # reading: os.environ.get(...) (a request's WSGI environ is not the environment), os.getenv(...), os.environ[...] (not as an assignment target), "in os.environ"
    pattern = re.compile(r"getenv\(|(?<!request\.)environ\.get\(|in os\.environ|os\.environ\[[^\]]*\](?!\s*=[^=])|environ\.copy|"
                         r"\*\*os\.environ|dict\(os\.environ")
    offenders = []
    for folder in ("service", "hooks", "rules", "fhir_mappers"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "service" / "config.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_serve_refuses_auth_off_by_environment_on_a_public_address(monkeypatch):
    from service.cli import main

    monkeypatch.setenv("AZA_CDS_AUTH_REQUIRED", "false")
    assert main(["serve", "--host", "0.0.0.0"]) == 2
