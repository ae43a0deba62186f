"""Cost of the per-request engine lookup, `Engine.match(call)`, with many templates stored.

    .venv/bin/python bench/match_cost.py [--templates 200] [--running 5]

Stores the templates, starts `--running` experiments throttling services the measured calls
do not use (and one that matches), then times match() with timeit for a call that matches
nothing, a call under a second service name, and a call that matches. Prints microseconds per
call: the lookup looks only at an index of running rules, so stored templates cost nothing.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import timeit
from pathlib import Path

from fisproxy.aws.call import AwsCall
from fisproxy.fis.api import FisApi
from fisproxy.fis.engine import Engine
from fisproxy.fis.fielderror import parse
from fisproxy.fis.inputs import CreateExperimentTemplateRequest
from fisproxy.fis.loops import drive
from fisproxy.store import Store

SERVICES = ["sqs", "sns", "kinesis", "lambda", "ec2", "s3"]


def template(service: str, i: int) -> CreateExperimentTemplateRequest:
    return parse(CreateExperimentTemplateRequest, {
        "description": f"bench {i}", "roleArn": "arn:aws:iam::123456789012:role/fis",
        "stopConditions": [{"source": "none"}],
        "actions": {"throttle": {"actionId": "aws:fis:inject-api-throttle-error",
                                 "parameters": {"service": service, "percentage": "50"}}},
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=200)
    parser.add_argument("--running", type=int, default=5)
    parser.add_argument("--number", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "state.sqlite")
        engine = Engine(store, state_dir=Path(tmp), rng=random.Random(1))
        api = FisApi(store, engine)
        templates = [api.create_template(template(SERVICES[i % len(SERVICES)], i), "us-east-1")
                     for i in range(args.templates)]
        for t in templates[: args.running]:
            engine.start_experiment(t, region="us-east-1", tags={}, actions_mode="run-all")
        drive(engine)  # resolve targets, start the actions
        calls = {
            "no running rule for it (dynamodb)": AwsCall("dynamodb", "us-east-1", "GetItem", "dynamodb"),
            "second name (monitoring/cloudwatch)": AwsCall("monitoring", "us-east-1", "ListMetrics", "cloudwatch"),
            "matching rule, 50% sampled (sqs)": AwsCall("sqs", "us-east-1", "SendMessage", "sqs"),
        }
        print(f"{args.templates} templates stored, {engine.active_count()} experiments running")
        for label, call in calls.items():
            seconds = timeit.timeit(lambda call=call: engine.match(call), number=args.number)
            print(f"  {label:40} {seconds / args.number * 1e6:6.2f} us per match()")
        engine.close()
        store.close()


if __name__ == "__main__":
    main()
