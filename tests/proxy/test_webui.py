"""mitmweb's footer reads `stream_large_bodies` as a number of bytes: the web master's addon
writes sizes that way, meaning the same to mitmproxy."""

from __future__ import annotations

import pytest
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons

from fisproxy.proxy.runtime import Runtime
from fisproxy.proxy.webui import StreamSizeInBytes, in_bytes, show_comments


@pytest.mark.parametrize(("size", "expected"), [
    ("1m", "1048576"), ("5m", "5242880"), ("512k", "524288"), ("2g", "2147483648"), ("10b", "10"),
    ("1048576", None), ("", None), (None, None), ("lots", None),
])
def test_sizes_are_written_in_bytes(size: str | None, expected: str | None) -> None:
    assert in_bytes(size) == expected


async def test_fisproxys_own_stream_large_bodies_reaches_mitmweb_in_bytes() -> None:
    runtime = Runtime()
    with taddons.context(proxyserver.Proxyserver(), runtime, StreamSizeInBytes()) as tctx:
        runtime._require_core_options()  # sets 1m where the user left the default
        assert tctx.options.stream_large_bodies == "1048576"
        tctx.options.update(stream_large_bodies="5m")  # the Options editor, --set
        assert tctx.options.stream_large_bodies == "5242880"


async def test_mitmweb_starts_with_the_comment_column() -> None:
    from mitmproxy.tools.web.webaddons import WebAddon

    with taddons.context(WebAddon()) as tctx:
        default = list(tctx.options.web_columns)
        show_comments(tctx.options)
        show_comments(tctx.options)
        assert tctx.options.web_columns == [*default, "comment"]
