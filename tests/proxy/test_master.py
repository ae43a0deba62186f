"""The lean master: which mitmproxy addons `fisproxy run` keeps, and its cached hook dispatch."""

from __future__ import annotations

from typing import Any

import pytest
from mitmproxy import addonmanager, exceptions, options
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import tflow

from fisproxy.proxy.master import ALWAYS, FISPROXY_SET, FisproxyDumpMaster, declared_options


def names(master: FisproxyDumpMaster) -> list[str]:
    return [addonmanager._get_name(a) for a in master.addons.chain]


async def test_defaults_keep_only_what_fisproxy_needs() -> None:
    master = FisproxyDumpMaster(options.Options())
    master.options.update(flow_detail=0)  # as `fisproxy run` sets it
    removed = master.prune()
    assert set(names(master)) == set(ALWAYS)
    assert {"dumper", "save", "modifyheaders", "proxyauth", "scriptloader", "onboarding"} <= set(removed)
    # fisproxy's addons sit where mitmproxy's script loader was: after proxyauth's place,
    # before nextlayer, as `-s addons/fisproxy.py` placed them
    chain = names(master)
    assert chain.index("block") < chain.index("endpointredirect") < chain.index("nextlayer")


def optional_addons_with_options() -> list[tuple[str, str]]:
    """(addon, one of its options) for every mitmdump addon fisproxy drops by default."""
    out = []
    from mitmproxy import addons
    from mitmproxy.addons import dumper, readfile

    for addon in [*addons.default_addons(), dumper.Dumper(), readfile.ReadFileStdin()]:
        name = addonmanager._get_name(addon)
        declared = sorted(declared_options(addon) - FISPROXY_SET)
        if name not in ALWAYS and declared:
            out.append((name, declared[0]))
    assert len(out) >= 15, out  # a sanity check on the enumeration itself
    return out


@pytest.mark.parametrize(("addon", "option"), optional_addons_with_options())
async def test_an_option_the_user_gives_keeps_its_addon(addon: str, option: str) -> None:
    master = FisproxyDumpMaster(options.Options())
    value = master.options._options[option].current()
    master.options.update(**{option: value})  # given, even with its default value
    master.prune()
    assert addon in names(master)


async def test_a_changed_option_keeps_its_addon_and_flow_detail_keeps_the_printer() -> None:
    master = FisproxyDumpMaster(options.Options())
    master.options.update(modify_headers=["/~q/x-a/1"], flow_detail=2)
    master.prune()
    assert {"modifyheaders", "dumper"} <= set(names(master))


async def test_reverse_mode_keeps_alt_svc_rewriting() -> None:
    master = FisproxyDumpMaster(options.Options())
    master.options.update(mode=["regular", "reverse:http://127.0.0.1:5000@9999"])
    master.prune()
    assert "updatealtsvc" in names(master)


class Recorder:
    def __init__(self, name: str, calls: list[str], *, halt: bool = False, boom: bool = False) -> None:
        self.name, self.calls, self.halt, self.boom = name, calls, halt, boom

    def request(self, flow: Any) -> None:
        self.calls.append(self.name)
        if self.boom:
            raise RuntimeError("a bug in an addon")
        if self.halt:
            raise exceptions.AddonHalt()


class AsyncRecorder(Recorder):
    async def request(self, flow: Any) -> None:  # type: ignore[override]
        self.calls.append(self.name)


async def test_dispatch_calls_handlers_in_chain_order_async_too_and_halt_stops() -> None:
    calls: list[str] = []
    master = FisproxyDumpMaster(options.Options())
    master.prune()
    master.addons.add(Recorder("a", calls), AsyncRecorder("b", calls), Recorder("c", calls, halt=True),
                      Recorder("d", calls))
    await master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
    assert calls == ["a", "b", "c"]


async def test_dispatch_logs_a_failing_handler_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    master = FisproxyDumpMaster(options.Options())
    master.prune()
    master.addons.add(Recorder("a", calls, boom=True), Recorder("b", calls))
    await master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
    assert calls == ["a", "b"]
    assert "a bug in an addon" in caplog.text


async def test_dispatch_sees_addons_added_after_an_event() -> None:
    calls: list[str] = []
    master = FisproxyDumpMaster(options.Options())
    master.prune()
    master.addons.add(Recorder("a", calls))
    await master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
    master.addons.add(Recorder("b", calls))
    await master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))
    assert calls == ["a", "a", "b"]
