"""Templates as code: experiment templates from a YAML or JSON file, applied at start-up.

Each template has CreateExperimentTemplate's shape (camelCase or snake_case keys) and is matched
to a stored template by its `Name` tag: a new name creates a template, a known name makes the
stored one match the file (same id, ARN and creation time). Templates not in the file are left
alone. Accepted layouts:

    templates:                 # a mapping: each key becomes the Name tag
      throttle-ddb: {description: ..., roleArn: ..., actions: {...}}
    templates: [{..., tags: {Name: throttle-ddb}}]   # a list: each needs a Name tag
    [{...}, {...}]             # the same list, bare
    {description: ..., actions: {...}, tags: {Name: x}}   # one template

`stopConditions` may be left out (means `[{source: none}]`). Numbers in parameters become strings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fisproxy.fis.fielderror import FieldError, parse
from fisproxy.fis.inputs import CreateExperimentTemplateRequest
from fisproxy.fis.models import ExperimentTemplate

if TYPE_CHECKING:
    from fisproxy.fis.api import FisApi

NAME_TAG = "Name"
DEFAULT_REGION = "us-east-1"


class TemplatesFileError(ValueError):
    """A templates file that cannot be used; the message is one line naming file and field."""


def load_templates(path: Path | str) -> list[CreateExperimentTemplateRequest]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise TemplatesFileError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise TemplatesFileError(f"{path}: line {e.lineno}, column {e.colno}: not valid JSON: {e.msg}") from None
    except yaml.YAMLError as e:
        raise TemplatesFileError(f"{path}: {_yaml_problem(e)}") from None
    return parse_templates(data, source=str(path))


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line with the 1-based line and column of the problem (PyYAML's marks count from 0),
    and of the construct it broke, if any: `line 3, column 7: not valid YAML: expected ...`."""
    if not isinstance(e, yaml.MarkedYAMLError) or e.problem_mark is None:
        return f"not valid YAML: {' '.join(str(e).split())}"

    def at(mark: yaml.Mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    text = f"{at(e.problem_mark)}: not valid YAML: {e.problem}"
    if e.context and e.context_mark is not None:
        text += f" ({e.context} at {at(e.context_mark)})"
    return text


def parse_templates(data: Any, source: str = "templates") -> list[CreateExperimentTemplateRequest]:
    """The templates in an already-parsed document (see the module docstring for layouts)."""
    entries: list[tuple[str, Any, str | None]] = []  # (field path, template, name from key)
    if isinstance(data, dict) and "templates" in data:
        data = data["templates"]
        if isinstance(data, dict):
            entries = [(f"templates.{name}", t, str(name)) for name, t in data.items()]
        elif isinstance(data, list):
            entries = [(f"templates[{i}]", t, None) for i, t in enumerate(data)]
        else:
            raise TemplatesFileError(f"{source}: templates: must be a mapping or a list")
    elif isinstance(data, list):
        entries = [(f"[{i}]", t, None) for i, t in enumerate(data)]
    elif isinstance(data, dict):
        entries = [("", data, None)]
    else:
        raise TemplatesFileError(f"{source}: expected templates (a mapping or a list)")

    out: list[CreateExperimentTemplateRequest] = []
    seen: dict[str, str] = {}
    for where, raw, key_name in entries:
        if not isinstance(raw, dict):
            raise TemplatesFileError(f"{source}: {where}: must be a mapping")
        raw = dict(raw)
        if "stopConditions" not in raw and "stop_conditions" not in raw:
            raw["stopConditions"] = [{"source": "none"}]
        if key_name is not None:
            raw["tags"] = {**(raw.get("tags") or {}), NAME_TAG: key_name}
        try:
            template = parse(CreateExperimentTemplateRequest, raw, where)
        except FieldError as e:
            raise TemplatesFileError(f"{source}: {e}") from None
        name = template.tags.get(NAME_TAG)
        if not name:
            raise TemplatesFileError(
                f"{source}: {where + '.' if where else ''}tags.{NAME_TAG}: required, to find the template again on restart"
            )
        if name in seen:
            raise TemplatesFileError(f"{source}: {where}: Name {name!r} is also used by {seen[name] or 'another'}")
        seen[name] = where
        out.append(template)
    return out


def apply_templates(
    source: Path | str | Sequence[CreateExperimentTemplateRequest],
    api: FisApi,
    *,
    region: str = DEFAULT_REGION,
) -> list[ExperimentTemplate]:
    """Create or update (matched by Name tag) every template of `source`; returns them in order."""
    templates = load_templates(source) if isinstance(source, Path | str) else list(source)
    by_name = {t.tags[NAME_TAG]: t for t in api.store.list_templates() if NAME_TAG in t.tags}
    applied = []
    for req in templates:
        existing = by_name.get(req.tags[NAME_TAG])
        if existing is None:
            applied.append(api.create_template(req, region))
        else:
            applied.append(api.replace_template(existing.id, req))
    return applied
