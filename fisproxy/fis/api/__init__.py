"""The FIS control API: all 26 operations of botocore's `fis` model (restJson1).

`service.py` is the entry (`FisApi.handle`); `wire.py` decodes requests from the model
(routes, labels, query types, checks); one module per resource holds its operations
(`templates.py`, `experiments.py`, `actiontypes.py`, `tags.py`, `accounts.py`, `levers.py`)
over `records.py`, what the API keeps in the store; `paging.py` pages lists; `errors.py` is the
model's error shapes, rendered like every AWS error.
"""

from fisproxy.fis.api.errors import FisError, render_error
from fisproxy.fis.api.experiments import MAX_ACTIVE_EXPERIMENTS, ExperimentRunner
from fisproxy.fis.api.service import DEFAULT_ACCOUNT_ID, FisApi

__all__ = ["DEFAULT_ACCOUNT_ID", "MAX_ACTIVE_EXPERIMENTS", "ExperimentRunner", "FisApi", "FisError", "render_error"]
