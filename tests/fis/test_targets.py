"""Target resolution (selection modes, accessKeyIds, tags via a role lookup) and identities."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from fisproxy.fis import targets
from fisproxy.fis.failure import Failure
from fisproxy.fis.identities import Identities, RoleRef, role_arn, role_ref
from fisproxy.fis.resources import resolve_target

ARNS = [f"arn:aws:iam::111122223333:role/r{i}" for i in range(10)]


def target(**kw):
    base = dict(resource_type="aws:iam:role", resource_arns=None, resource_tags=None, filters=None,
                selection_mode="ALL", parameters=None)
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize(
    "mode, expected",
    [("ALL", ("ALL", None)), ("COUNT(3)", ("COUNT", 3)), ("PERCENT(50)", ("PERCENT", 50)),
     (None, ("ALL", None))],
)
def test_parse_selection_mode(mode, expected):
    assert targets.parse_selection_mode(mode) == expected


@pytest.mark.parametrize("mode", ["COUNT", "ALL(2)", "PERCENT(0)", "PERCENT(101)", "RANDOM(1)", "count(2)",
                                  "COUNT(0)", "COUNT(\u0663)", " ALL", "COUNT(1) "])
def test_parse_selection_mode_rejects(mode):
    with pytest.raises(ValueError, match="selectionMode"):
        targets.parse_selection_mode(mode)


def test_count_zero_is_refused_at_run_time_too():
    # A target that can select nothing: the template is refused when written (test_models.py),
    # and the same grammar refuses it when an experiment resolves it.
    with pytest.raises(targets.SelectionModeError, match=r'COUNT needs at least 1, got "COUNT\(0\)"'):
        targets.select(ARNS, "COUNT(0)", random.Random(0))


def test_count_is_random_but_reproducible_with_a_seed():
    picks = {targets.select(ARNS, "COUNT(3)", random.Random(seed)) for seed in range(20)}
    assert all(len(p) == 3 and set(p) <= set(ARNS) for p in picks)
    assert len(picks) > 1  # different seeds pick different roles
    assert targets.select(ARNS, "COUNT(3)", random.Random(7)) == targets.select(ARNS, "COUNT(3)", random.Random(7))
    assert targets.select(ARNS[:2], "COUNT(5)", random.Random(1)) == tuple(ARNS[:2])


@pytest.mark.parametrize("n, total, expected", [(50, 5, 2), (50, 10, 5), (10, 5, 0), (100, 3, 3), (34, 3, 1)])
def test_percent_rounds_down(n, total, expected):
    assert len(targets.select(ARNS[:total], f"PERCENT({n})", random.Random(0))) == expected


def test_roles_by_arn_resolve_offline_with_their_access_keys():
    res = resolve_target("app", target(resource_arns=ARNS[:2], parameters={"accessKeyIds": "AKIA1, AKIA2 AKIA3"}),
                         None, "us-east-1", random.Random(0))
    assert res.arns == tuple(ARNS[:2]) and res.by_arn and not res.empty
    assert res.access_keys == ("AKIA1", "AKIA2", "AKIA3")


def test_a_role_target_of_explicit_keys_only():
    res = resolve_target("app", target(parameters={"accessKeyIds": "AKIA9"}), None, "us-east-1", random.Random(0))
    assert res.arns == () and res.access_keys == ("AKIA9",) and not res.by_arn and not res.empty


def test_arns_with_tags_is_a_configuration_failure():
    with pytest.raises(Failure, match="cannot combine") as e:
        resolve_target("app", target(resource_arns=ARNS[:1], resource_tags={"a": "b"}), None, "us-east-1",
                       random.Random(0))
    assert e.value.code == "ConfigurationFailure"


@pytest.mark.parametrize(
    "arn, ref",
    [
        ("arn:aws:iam::123456789012:role/app", RoleRef("123456789012", "app")),
        ("arn:aws:iam::123456789012:role/service-role/deep/app", RoleRef("123456789012", "app")),
        ("arn:aws:sts::123456789012:assumed-role/app/session-1", RoleRef("123456789012", "app")),
        ("arn:aws-cn:sts::123456789012:assumed-role/app/s", RoleRef("123456789012", "app")),
        ("arn:aws:iam::123456789012:user/bob", None),
        ("arn:aws:sts::123456789012:federated-user/bob", None),
        ("not-an-arn", None),
    ],
)
def test_role_ref(arn, ref):
    assert role_ref(arn) == ref


def test_role_arn_normalises_assumed_roles():
    assert role_arn("arn:aws:sts::123:assumed-role/app/s") == "arn:aws:iam::123:role/app"
    assert role_arn("arn:aws:iam::123:role/p/app") == "arn:aws:iam::123:role/p/app"
    assert role_arn("arn:aws:iam::123:user/bob") == "arn:aws:iam::123:user/bob"


def test_identities_learn_and_relearn():
    ids = Identities()
    assert ids.learn("ASIA1", "arn:aws:sts::123:assumed-role/app/s1")
    assert not ids.learn("ASIA1", "arn:aws:sts::123:assumed-role/app/s2")  # same role: no change
    assert ids.role_of("ASIA1") == RoleRef("123", "app")
    assert ids.principal_of("ASIA1") == "arn:aws:iam::123:role/app"
    assert ids.learn("ASIA1", "arn:aws:iam::123:user/bob")
    assert ids.role_of("ASIA1") is None and ids.role_of(None) is None and ids.role_of("nope") is None
