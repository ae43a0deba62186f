"""The README walkthrough's figure for the throttled `aws dynamodb put-item` (about 25 s of
retries) is botocore's legacy retry policy for DynamoDB, which the AWS CLI v1 uses. The call
itself, through the real proxy, is in tests/e2e/test_env.py; the whole walkthrough, pasted into
shells while another fisproxy runs, in tests/e2e/test_walkthrough.py."""

from __future__ import annotations

import re
from pathlib import Path

from botocore.loaders import Loader
from botocore.retryhandler import delay_exponential

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_states_the_legacy_dynamodb_backoff() -> None:
    policy = Loader().load_data("_retry")["retry"]["dynamodb"]["__default__"]
    attempts, delay = policy["max_attempts"], policy["delay"]
    waits = [delay_exponential(delay["base"], delay["growth_factor"], n) for n in range(1, attempts)]
    text = " ".join(README.read_text().split())
    assert f"retried the throttle {attempts - 1} times" in text
    assert "the put-item takes about 25 s" in text and round(sum(waits)) in (25, 26)
    assert (f"backs off {waits[0] * 1000:g} ms, {waits[1] * 1000:g} ms, ... {waits[-1]:g} s between "
            f"DynamoDB's {'ten' if attempts == 10 else attempts} attempts, {sum(waits):.2f} s in all") in text
    assert re.search(r"measured through the proxy with AWS CLI [\d.]+: [\d.]+-[\d.]+ s per put-item", text)
