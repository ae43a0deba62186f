"""What `fisproxy web` adds to mitmweb's own addons and options, for what its page shows.

`show_comments`: the flow list starts with mitmweb's Comment column, where fisproxy says which
experiment and action faulted a flow (`--set web_columns=...` or config.yaml still decide).

`StreamSizeInBytes`: mitmweb's footer shows `stream_large_bodies` through its `formatSize`,
which takes a number of bytes (`web/src/js/utils.ts`, 11.0 and 12.x): fisproxy's `1m` (and any
`--set stream_large_bodies=5m`) came out as `stream: NaNundefined`. The same size written in
bytes (`1048576`) means the same to mitmproxy (`utils/human.py: parse_size`) and shows as
`stream: 1mb`. A value mitmproxy cannot read is left for mitmproxy to refuse.
"""

from __future__ import annotations

from mitmproxy import ctx, options
from mitmproxy.utils import human

OPTION = "stream_large_bodies"


def show_comments(opts: options.Options) -> None:
    """Add the Comment column to mitmweb's flow list (before the command line and config.yaml
    are read: they still choose)."""
    if "comment" not in opts.web_columns:
        opts.update(web_columns=[*opts.web_columns, "comment"])


def in_bytes(size: str | None) -> str | None:
    """`size` as a plain number of bytes, or None if it already is one (or is not a size)."""
    if not size or size.isdigit():
        return None
    try:
        value = human.parse_size(size)
    except ValueError:
        return None
    return None if value is None else str(value)


class StreamSizeInBytes:
    def configure(self, updated: set[str]) -> None:
        if OPTION in updated and (size := in_bytes(getattr(ctx.options, OPTION))) is not None:
            ctx.options.update(**{OPTION: size})
