"""Which namespaces an operator takes."""

from __future__ import annotations

from lepton_operator.config import OperatorConfig


def test_exact_namespaces_go_to_kopf() -> None:
    cfg = OperatorConfig(namespaces=["ml", "research"])
    assert cfg.exact_namespaces == ["ml", "research"] and cfg.watches("anything")


def test_patterns_watch_cluster_wide_and_filter_here() -> None:
    cfg = OperatorConfig(namespaces=["team-*"])
    assert cfg.exact_namespaces == []
    assert cfg.watches("team-a") and not cfg.watches("other") and not cfg.watches(None)


def test_no_namespaces_means_all() -> None:
    cfg = OperatorConfig()
    assert cfg.exact_namespaces == [] and cfg.watches("x")
