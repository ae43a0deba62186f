"""Read at the start of a Python process whose PYTHONPATH names this folder: the AWS CLI, in
tests that count its attempts against a fault (`tests.helpers.AWS_CLI_NO_BACKOFF`). Its retry
sleeps are skipped, so DynamoDB's ten legacy attempts do not sit through 25 s of back-off; the
attempts themselves are the CLI's own.

awscli 1.x carries its own botocore and imports it as `botocore` once `awscli` is imported
(its `TopLevelImportAliasFinder`), so awscli is imported first: the `botocore.endpoint` patched
here is the one the CLI runs.
"""

import time

import awscli  # noqa: F401
import botocore.endpoint


class _SkippedBackoff:
    def sleep(self, seconds: float) -> None:
        pass

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


botocore.endpoint.time = _SkippedBackoff()
