"""What a proxy does every few seconds for the others on its store, on the engine's
housekeeping thread (`fis/loops.py`), never on mitmproxy's event loop.

- Its heartbeat in the fleet listing (`fisproxy proxies`): the full registration once, then
  only its expiry moved, every HEARTBEAT_SECONDS.
- Its counts into the shared metrics (only when it counted something).
- The resync under the change feed, every RESYNC_SECONDS: one small read of the store's data
  version, and the active experiments only when it moved (`ChangeFollower.resync`,
  `fis/following.py`); the Chaos rules.

Each of these costs the store the same whatever the number of experiments that ended: an idle
proxy is a few small commands every few seconds (`bench/fleet.py` measures them on Redis for
10 to 1,000 proxies, running this class without mitmproxy). The intervals vary by up to a
tenth at random (never lengthened), so that proxies started together (a deployment) do not
stay in step.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from fisproxy.fis.chaos import ChaosState
from fisproxy.fis.engine import Engine
from fisproxy.fis.ports import StoreUnavailable
from fisproxy.metrics import Metrics
from fisproxy.store.base import StoreBackend

logger = logging.getLogger("fisproxy")

HEARTBEAT_SECONDS = 5.0
PROXY_TTL_SECONDS = 15.0  # a proxy not seen for this long leaves the fleet listing
RESYNC_SECONDS = 10.0  # a change notice lost is made up for within this
JITTER = 0.1  # intervals vary by this fraction


class Housekeeping:
    def __init__(self, store: StoreBackend, engine: Engine, proxy_id: str, describe: Callable[[], Mapping[str, Any]],
                 *, metrics: Metrics | None = None, chaos: ChaosState | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.engine = engine
        self.proxy_id = proxy_id
        self.describe = describe  # what `fisproxy proxies` shows of this proxy
        self.metrics = metrics
        self.chaos = chaos
        self._clock = clock
        self._next_beat = 0.0
        self._next_resync = 0.0

    def __call__(self) -> None:
        now = self._clock()
        try:
            if now >= self._next_beat:
                self.store.register_proxy(self.proxy_id, self.describe(), PROXY_TTL_SECONDS)
                self._next_beat = now + _jittered(HEARTBEAT_SECONDS)
            if self.metrics is not None:
                self.metrics.flush()
            if now >= self._next_resync:
                self.engine.follower.resync()
                if self.chaos is not None:
                    self.chaos.reload()
                self._next_resync = now + _jittered(RESYNC_SECONDS)
        except StoreUnavailable as e:
            # Traffic goes on; the experiments known here keep their faults until they end. The
            # store announced the outage (one line when it starts, one when it ends).
            logger.debug("fisproxy: housekeeping: the store is unavailable (%s); retrying", e)


def _jittered(seconds: float) -> float:
    return seconds * random.uniform(1 - JITTER, 1)
