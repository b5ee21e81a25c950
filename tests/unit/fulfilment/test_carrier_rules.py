"""Carrier choice: an ordered rule list on (shipping method, destination country), first match wins."""

import json

import pytest
from pydantic import ValidationError

from fulfilment.bootstrap import load_rules
from fulfilment.domain import DEFAULT_RULES, EU_COUNTRIES, choose_carrier, parse_rules


def _choice(rules, method: str, country: str) -> tuple[str, str] | None:
    rule = choose_carrier(rules, method, country)
    return None if rule is None else (rule.carrier, rule.service)


@pytest.mark.parametrize(("method", "country", "expected"), [
    ("express", "PT", ("oms-express", "next_day")),
    ("express", "US", ("oms-express", "next_day")),
    ("standard", "PT", ("oms-post", "standard")),
    ("standard", "ES", ("oms-post", "standard")),
    ("standard", "DE", ("oms-post", "international")),
    ("standard", "FR", ("oms-post", "international")),
    ("standard", "de", ("oms-post", "international")),  # country codes compare case-insensitively
    ("standard", "US", None),
    ("standard", "CH", None),  # Europe, but not the EU
])
def test_default_rules(method: str, country: str, expected: tuple[str, str] | None) -> None:
    assert _choice(DEFAULT_RULES, method, country) == expected


def test_every_eu_country_has_a_standard_carrier() -> None:
    assert len(EU_COUNTRIES) == 27
    assert all(choose_carrier(DEFAULT_RULES, "standard", c) is not None for c in EU_COUNTRIES)


def test_first_matching_rule_wins_and_wildcards_match_anything() -> None:
    rules = parse_rules([
        {"shipping_method": "standard", "country": "PT", "carrier": "local", "service": "same_day"},
        {"shipping_method": "standard", "country": "*", "carrier": "world", "service": "economy"},
        {"shipping_method": "*", "country": "PT", "carrier": "never", "service": "shadowed_for_standard"},
    ])
    assert _choice(rules, "standard", "PT") == ("local", "same_day")
    assert _choice(rules, "standard", "JP") == ("world", "economy")
    assert _choice(rules, "express", "PT") == ("never", "shadowed_for_standard")
    assert _choice(rules, "express", "JP") is None


def test_rules_accept_a_wrapping_object_and_country_lists() -> None:
    rules = parse_rules({"rules": [
        {"shipping_method": "express", "country": ["pt", "ES"], "carrier": "c", "service": "s"},
    ]})
    assert rules[0].country == frozenset({"PT", "ES"})


@pytest.mark.parametrize("bad", [
    [],
    [{"shipping_method": "overnight", "country": "PT", "carrier": "c", "service": "s"}],
    [{"shipping_method": "standard", "country": "Portugal", "carrier": "c", "service": "s"}],
    [{"shipping_method": "standard", "country": [], "carrier": "c", "service": "s"}],
    [{"shipping_method": "standard", "country": "PT", "carrier": "", "service": "s"}],
    [{"shipping_method": "standard", "country": "PT", "carrier": "c"}],
    [{"shipping_method": "standard", "country": "PT", "carrier": "c", "service": "s", "extra": 1}],
    {"not_rules": []},
])
def test_invalid_rule_lists_are_refused(bad) -> None:
    with pytest.raises((ValueError, ValidationError)):
        parse_rules(bad)


def test_load_rules_reads_the_file_or_falls_back_to_defaults(tmp_path) -> None:
    assert load_rules(None) == DEFAULT_RULES
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([{"shipping_method": "*", "country": "*", "carrier": "oms-post", "service": "x"}]))
    assert _choice(load_rules(path), "express", "BR") == ("oms-post", "x")
    path.write_text("[{")
    with pytest.raises(SystemExit, match="rules.json"):
        load_rules(path)
    with pytest.raises(SystemExit, match="missing.json"):
        load_rules(tmp_path / "missing.json")
