"""fisproxy's mitmproxy masters: mitmdump's and mitmweb's, with fisproxy's addons built in.

mitmproxy calls every addon in its chain for every event of every flow (`AddonManager.
trigger_event`: a context manager, a generator and a `getattr` per addon per event, then the same
again for the `update` event), whether or not the addon has a handler or anything to do. mitmdump
loads ~35 addons; fisproxy needs a handful of them. So `fisproxy run` keeps:

- what every proxy needs: `core`, `proxyserver`, `nextlayer`, `tlsconfig`, `block` (refuses
  clients from outside the local network when the proxy listens publicly without proxy
  authentication, on by default), `disableh2c`, `keepserving`, `errorcheck`, and the log;
- the addons of every mitmproxy option the user sets (`--set proxyauth=...`, `modify_headers`,
  `map_remote`, `save_stream_file`, `-s script.py`...): a user of mitmproxy's options does not
  lose them;
- `updatealtsvc` in reverse mode (`--endpoint-port`), the flow printer when `flow_detail` > 0.

Every other addon is removed before the servers start. All options stay declared, so `--set`
of any mitmproxy option works, and an option that nothing declares is an error (exit 2), never
silently ignored. `fisproxy web` keeps all of mitmweb's addons (its UI uses them).

fisproxy's own addons (`proxy/addons.py`) are added directly where mitmproxy's script loader sits
in the chain (after `proxyauth`, before `nextlayer`), as `-s addons/fisproxy.py` would place
them, without the script loader's file watcher.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mitmproxy import addonmanager, exceptions, hooks, options
from mitmproxy.tools import cmdline
from mitmproxy.tools import main as mitm_main
from mitmproxy.tools.dump import DumpMaster

from fisproxy.proxy.addons import make_addons

log = logging.getLogger(__name__)

# Addons (by mitmproxy's name for them) that run whatever the options say.
ALWAYS = frozenset({
    "termlog", "core", "block", "disableh2c", "proxyserver", "nextlayer", "tlsconfig",
    "keepserving", "errorcheck",
    # fisproxy's own
    "endpointredirect", "runtime", "fishost", "faultinjector", "upstreamerrors", "observer",
    "commands", "tlstrusthint",
})
# Options fisproxy itself gives a value (they do not make their addon wanted).
FISPROXY_SET = frozenset({"flow_detail"})
# Addons whose default settings are active, kept when this says so.
ACTIVE_WHEN: dict[str, Callable[[options.Options], bool]] = {
    "updatealtsvc": lambda o: any(m.startswith("reverse") for m in o.mode),
    "dumper": lambda o: o.flow_detail > 0,
    "scriptloader": lambda o: bool(o.scripts),
}


class _OptionNames:
    """A stand-in loader that records the options an addon declares in its `load`."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def add_option(self, name: str, *_: Any, **__: Any) -> None:
        self.names.add(name)

    def add_command(self, *_: Any, **__: Any) -> None:
        pass


def declared_options(addon: Any) -> set[str]:
    """The options `addon` declares (its own; mitmproxy's core options are declared by
    `options.Options`)."""
    load = getattr(addon, "load", None)
    if load is None:
        return set()
    names = _OptionNames()
    load(names)
    return names.names


def wanted(addon: Any, opts: options.Options, given: set[str]) -> bool:
    """Whether the proxy keeps `addon`, with `opts` as it starts and `given` the options the
    user gave a value (even the default one: `--set onboarding=true` keeps mitm.it)."""
    name = addonmanager._get_name(addon)
    if name in ALWAYS:
        return True
    if name in ACTIVE_WHEN and ACTIVE_WHEN[name](opts):
        return True
    return any(o in given or (o in opts and opts._options[o].has_changed())
               for o in declared_options(addon) - FISPROXY_SET)


def insert_fisproxy_addons(manager: addonmanager.AddonManager) -> None:
    """Add fisproxy's addons to `manager`, placed right after mitmproxy's script loader."""
    ours = make_addons()
    manager.add(*ours)
    rest = [a for a in manager.chain if not any(a is o for o in ours)]
    at = next((i + 1 for i, a in enumerate(rest) if addonmanager._get_name(a) == "scriptloader"),
              len(rest))
    manager.chain = rest[:at] + ours + rest[at:]


def unknown_options(opts: options.Options) -> list[str]:
    """`--set` names no addon declared (mitmproxy keeps them aside and says nothing)."""
    return sorted(opts.deferred)


class HookDispatch:
    """`AddonManager.trigger_event` with the handlers of each event looked up once.

    mitmproxy's own walks every addon (and its sub-addons) for every event, looking for a
    method of the event's name, inside a context manager per addon, then does it again for the
    `update` event that follows each flow event; most addons have no handler for most events.
    This keeps, per event name, the list of (addon, handler) found in the chain, and calls only
    those, each inside mitmproxy's own error boundary (`safecall`); an `AddonHalt` stops the
    event as in mitmproxy. The lists are rebuilt when the chain changes (mitmproxy appends to
    it or replaces it). A chain with nested addons (scripts, which reload) is not cached.
    """

    def __init__(self, manager: addonmanager.AddonManager) -> None:
        self._manager = manager
        self._original = manager.trigger_event
        self._key: tuple[int, int] = (0, -1)
        self._handlers: dict[str, list[tuple[Any, Callable[..., Any]]]] = {}

    def install(self) -> None:
        self._manager.trigger_event = self.trigger_event  # type: ignore[method-assign]

    def handlers(self, name: str) -> list[tuple[Any, Callable[..., Any]]] | None:
        chain = self._manager.chain
        key = (id(chain), len(chain))
        if key != self._key:
            self._key, self._handlers = key, {}
        found = self._handlers.get(name)
        if found is None:
            if any(getattr(a, "addons", None) for a in chain):
                return None  # nested addons come and go (script reloads): no cache
            found = self._handlers[name] = [
                (a, f) for a in chain if callable(f := getattr(a, name, None))]
        return found

    async def trigger_event(self, event: hooks.Hook) -> None:
        handlers = self.handlers(event.name)
        if handlers is None:
            await self._original(event)
            return
        args = event.args()
        for _addon, func in handlers:
            try:
                with addonmanager.safecall():
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                return


class FisproxyDumpMaster(DumpMaster):
    """mitmdump's master with fisproxy's addons, pruned to the addons in use when it starts."""

    def __init__(self, opts: options.Options, **kwargs: Any) -> None:
        super().__init__(opts, **kwargs)
        insert_fisproxy_addons(self.addons)
        HookDispatch(self.addons).install()
        # From here on, every option set (command line, --set, config.yaml) is the user's.
        self.given: set[str] = set()
        opts.changed.connect(self._options_given)

    def _options_given(self, updated: set[str]) -> None:
        self.given |= updated

    def prune(self) -> list[str]:
        """Remove the addons nothing uses (see the module's docstring); their names."""
        manager = self.addons
        removed = [a for a in manager.chain if not wanted(a, self.options, self.given)]
        # Taken out of the chain without their `done` hook (AddonManager.remove calls it, and
        # some are async): they never ran.
        manager.chain = [a for a in manager.chain if not any(a is r for r in removed)]
        for addon in addonmanager.traverse(removed):
            manager.lookup.pop(addonmanager._get_name(addon), None)
        return [addonmanager._get_name(a) for a in removed]

    async def run(self) -> None:
        if unknown := unknown_options(self.options):
            sys.stderr.write(_unknown_message(unknown, self.options) + "\n")
            sys.exit(2)
        self.options.changed.disconnect(self._options_given)
        removed = self.prune()
        log.debug("mitmproxy addons not used, removed: %s", ", ".join(removed))
        await super().run()


def _unknown_message(unknown: Sequence[str], opts: options.Options) -> str:
    import difflib

    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(opts.keys()), n=1)
        parts.append(f"{name}" + (f" (did you mean {close[0]}?)" if close else ""))
    return f"fisproxy: error: unknown mitmproxy option: {', '.join(parts)}"


def run_dump(argv: Sequence[str]) -> Any:
    """Run the proxy with `argv` (mitmdump's arguments); the master once it has stopped."""
    return mitm_main.run(FisproxyDumpMaster, cmdline.mitmdump, list(argv))


def run_web(argv: Sequence[str]) -> Any:
    """Run mitmweb (all its addons) with fisproxy's addons and `argv` (mitmweb's arguments)."""
    from mitmproxy.tools.web.master import WebMaster

    from fisproxy.proxy.webui import StreamSizeInBytes, show_comments

    class FisproxyWebMaster(WebMaster):
        def __init__(self, opts: options.Options, **kwargs: Any) -> None:
            super().__init__(opts, **kwargs)
            insert_fisproxy_addons(self.addons)
            self.addons.add(StreamSizeInBytes())
            show_comments(opts)

    return mitm_main.run(FisproxyWebMaster, cmdline.mitmweb, list(argv))
