"""Tags on templates and experiments: TagResource, UntagResource, ListTagsForResource.

A template's tags are part of it; an experiment's tags added later are kept beside it
(`records.py`), so the engine's writes and these never overwrite each other."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fisproxy.fis import ids
from fisproxy.fis.api.errors import invalid
from fisproxy.fis.api.records import Records
from fisproxy.fis.api.wire import OperationInput
from fisproxy.fis.fielderror import parse
from fisproxy.fis.inputs import TagResourceRequest
from fisproxy.fis.outputs import Empty, ListTagsForResourceResponse

MAX_TAGS = 50
TAGGABLE = ("experiment-template", "experiment")


class TagOperations:
    def __init__(self, records: Records) -> None:
        self.records = records

    def _tagged(self, arn: str) -> tuple[str, str]:
        """(kind, id) of the template or experiment `arn` names (ResourceNotFoundException if
        there is none)."""
        parsed = ids.parse_fis_arn(arn)
        if parsed is None or parsed[0] not in TAGGABLE:
            raise invalid(f'resourceArn: not an experiment template or experiment ARN: "{arn}"')
        self._tags(*parsed)
        return parsed

    def _tags(self, kind: str, resource_id: str) -> dict[str, str]:
        if kind == "experiment-template":
            return dict(self.records.template(resource_id).tags)
        return dict(self.records.experiment(resource_id).tags)

    def _change(self, kind: str, resource_id: str, change: Callable[[dict[str, str]], None]) -> None:
        if kind == "experiment-template":
            t = self.records.template(resource_id)
            change(t.tags)
            _check_count(t.tags)
            self.records.store.put_template(t)
        else:
            tags = self._tags(kind, resource_id)
            change(tags)
            _check_count(tags)
            self.records.put_experiment_tags(resource_id, tags)

    def tag_resource(self, inp: OperationInput, region: str) -> Empty:
        kind, resource_id = self._tagged(inp.params["resourceArn"])
        req = parse(TagResourceRequest, inp.body)
        self._change(kind, resource_id, lambda tags: tags.update(req.tags))
        return Empty()

    def untag_resource(self, inp: OperationInput, region: str) -> Empty:
        kind, resource_id = self._tagged(inp.params["resourceArn"])
        keys = inp.params.get("tagKeys", [])

        def remove(tags: dict[str, str]) -> None:
            for key in keys:
                tags.pop(key, None)

        self._change(kind, resource_id, remove)
        return Empty()

    def list_tags_for_resource(self, inp: OperationInput, region: str) -> ListTagsForResourceResponse:
        return ListTagsForResourceResponse(tags=self._tags(*self._tagged(inp.params["resourceArn"])))


def _check_count(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise invalid(f"tags: at most {MAX_TAGS} tags per resource, got {len(tags)}")
