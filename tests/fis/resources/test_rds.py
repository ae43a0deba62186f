"""RDS actions on a real moto server."""

from __future__ import annotations

import pytest

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources import implementation, perform
from tests.fis.resources.conftest import Target, boto


def test_reboot_db_instances_reboots_only_the_targets(moto_url, tag, resolve, context):
    rds = boto(moto_url, "rds")
    names = [f"db-{tag['fis-test']}-{i}" for i in range(2)]
    for i, name in enumerate(names):
        rds.create_db_instance(DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.t3.micro",
                               MasterUsername="u", MasterUserPassword="password1", AllocatedStorage=20,
                               Tags=[{"Key": k, "Value": v} for k, v in tag.items()] if i == 0 else [])
    log: list[str] = []
    target = resolve(Target("aws:rds:db", resource_tags=tag))
    perform(implementation("aws:rds:reboot-db-instances"),
            context("aws:rds:reboot-db-instances", {"DBInstances": target}, {"forceFailover": "true"}, log=log))
    assert log == [f"Rebooted DB instance {names[0]} with failover."]


def test_failover_db_cluster_refused_by_the_upstream_is_the_reason(moto_url, tag, resolve, context):
    name = f"c-{tag['fis-test']}"
    boto(moto_url, "rds").create_db_cluster(DBClusterIdentifier=name, Engine="aurora-postgresql", MasterUsername="u",
                                            MasterUserPassword="password1",
                                            Tags=[{"Key": k, "Value": v} for k, v in tag.items()])
    target = resolve(Target("aws:rds:cluster", resource_tags=tag))
    with pytest.raises(Failure) as err:
        perform(implementation("aws:rds:failover-db-cluster"), context("aws:rds:failover-db-cluster", {"Clusters": target}))
    assert err.value.reason == (
        f"rds FailoverDBCluster of {name} failed on the upstream: InvalidDBClusterStateFault: "
        f"Database cluster:{name} should have at least two database instances for failover"
    )
