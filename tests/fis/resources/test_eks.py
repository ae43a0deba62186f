"""aws:eks:terminate-nodegroup-instances on a real moto server: the node group's instances are
the EC2 instances EKS tags with its cluster and node group names."""

from __future__ import annotations

from fisproxy.fis.resources import implementation, perform
from tests.fis.resources.conftest import ACCOUNT, Target, boto, run_instances, states


def test_terminate_nodegroup_instances_terminates_the_percentage(moto_url, tag, resolve, context):
    cluster = f"k-{tag['fis-test']}"
    eks = boto(moto_url, "eks")
    eks.create_cluster(name=cluster, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={})
    eks.create_nodegroup(clusterName=cluster, nodegroupName="workers", nodeRole=f"arn:aws:iam::{ACCOUNT}:role/n",
                         subnets=["subnet-1"], tags=tag)
    nodes = run_instances(moto_url, 4, {"eks:cluster-name": cluster, "eks:nodegroup-name": "workers"})
    elsewhere = run_instances(moto_url, 1, {"eks:cluster-name": cluster, "eks:nodegroup-name": "other"})
    log: list[str] = []
    target = resolve(Target("aws:eks:nodegroup", resource_tags=tag))
    perform(implementation("aws:eks:terminate-nodegroup-instances"),
            context("aws:eks:terminate-nodegroup-instances", {"Nodegroups": target},
                    {"instanceTerminationPercentage": "50"}, log=log))
    after = states(moto_url, nodes + elsewhere)
    gone = [i for i in nodes if after[i] in ("shutting-down", "terminated")]
    assert len(gone) == 2 and after[elsewhere[0]] == "running"
    assert log == [f"Terminated {', '.join(sorted(gone))} of node group workers (2 of 4)."]
