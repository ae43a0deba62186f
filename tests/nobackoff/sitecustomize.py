"""Read at the start of every Python process whose PYTHONPATH names this folder
(`tests.helpers.no_backoff_env`): botocore's retry sleeps are skipped, so a test that runs the
AWS CLI against a fault and only counts its attempts does not sit through the back-off (25 s for
DynamoDB's ten legacy attempts). The attempts themselves are the CLI's own."""

import time

import botocore.endpoint


class _SkippedBackoff:
    def sleep(self, seconds: float) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


botocore.endpoint.time = _SkippedBackoff()
