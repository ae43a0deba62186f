"""Read at the start of a Python process whose PYTHONPATH names this folder: a `fisproxy run`
in e2e tests that check how a failed report delivery ends (its attempts, its reason), not how
long it waits between them (`tests.helpers.QUICK_REPORT_RETRIES`). The waits before the second
and third attempts, 5 s and 30 s (`fisproxy.reports.delivery.RETRY_SECONDS`, read at each
failure), become 0.5 s each; the attempts themselves are the proxy's own.
tests/reports/test_delivery.py checks the real waits on an injected clock.
"""

from fisproxy.reports import delivery

delivery.RETRY_SECONDS = (0.5,) * len(delivery.RETRY_SECONDS)
