"""How long a report takes, and how large it is, in each rendering (in this process).

    .venv/bin/python bench/report.py [--records 200000]

Seeds a state file with one finished experiment over `--records` recorded requests (as
bench/stall.py does: DynamoDB PutItem calls of three attempts, two throttled, 100 a second),
then times building the report model from the store and rendering it as JSON, the console view,
HTML and PDF. The proxy does all of this in its report process (nice 19), never on its own
interpreter; these are the times that process spends per report.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stall import seed_records  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    from fisproxy.reports.service import build, render
    from fisproxy.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.sqlite"
        experiment_id = seed_records(state, args.records)
        store = Store(state)
        started = time.perf_counter()
        report = build(store, experiment_id, with_dashboards=False)
        built = time.perf_counter() - started
        print(f"{args.records} records: model built in {built:.2f} s "
              f"({len(report.traffic.operations)} operations, {report.traffic.buckets} buckets)")
        for fmt in ("json", "console", "html", "pdf"):
            started = time.perf_counter()
            body = render(report, fmt)
            print(f"  {fmt:8} {time.perf_counter() - started:6.3f} s  {len(body) / 1024:8.1f} KiB")
        store.close()


if __name__ == "__main__":
    main()
