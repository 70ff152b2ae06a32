"""The models and deploy/crds/ describe the same fields, with the same types and requiredness."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
import yaml

from hybridnet.api import codec
from hybridnet.api.meta import Resource
from hybridnet.api.resources import HYBRIDNET_KINDS

CRD_DIR = Path(__file__).resolve().parents[3] / "deploy" / "crds"


def load_crds() -> dict[str, dict[str, Any]]:
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


def _strip_optional(hint: Any) -> Any:
    if get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return inner
    return hint


def _is_required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def compare(hint: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Differences between a model type and an OpenAPI schema, as readable lines."""
    hint = _strip_optional(hint)
    origin = get_origin(hint)
    scalar = {str: "string", int: "integer", bool: "boolean"}
    if hint in scalar:
        expected = scalar[hint]
        return [] if schema.get("type") == expected else [f"{path}: model {expected}, CRD {schema}"]
    if origin is list:
        if schema.get("type") != "array":
            return [f"{path}: model list, CRD {schema.get('type')}"]
        return compare(get_args(hint)[0], schema["items"], f"{path}[]")
    if origin is dict:
        if schema.get("type") != "object" or "additionalProperties" not in schema:
            return [f"{path}: model map, CRD {schema}"]
        return compare(get_args(hint)[1], schema["additionalProperties"], f"{path}{{}}")
    assert isinstance(hint, type) and dataclasses.is_dataclass(hint), f"unexpected {hint} at {path}"
    if schema.get("type") != "object":
        return [f"{path}: model object, CRD {schema.get('type')}"]
    fields = {name: (field, t) for field, name, t in codec.codec_fields(hint)}
    properties = schema.get("properties", {})
    problems = [f"{path}.{n}: in the model only" for n in fields.keys() - properties.keys()]
    problems += [f"{path}.{n}: in the CRD only" for n in properties.keys() - fields.keys()]
    required_in_model = {n for n, (f, _) in fields.items() if _is_required(f)}
    if required_in_model != set(schema.get("required", [])):
        problems.append(
            f"{path}: required differs, model {sorted(required_in_model)}, "
            f"CRD {sorted(schema.get('required', []))}"
        )
    for name in fields.keys() & properties.keys():
        problems += compare(fields[name][1], properties[name], f"{path}.{name}")
    return problems


@pytest.mark.parametrize("model", HYBRIDNET_KINDS, ids=lambda m: m.KIND.kind)
def test_model_and_crd_agree_on_every_field(model: type[Resource]) -> None:
    crd = load_crds()[model.KIND.kind]
    assert crd["spec"]["group"] == model.KIND.group
    assert crd["spec"]["names"]["plural"] == model.KIND.plural
    assert (crd["spec"]["scope"] == "Namespaced") == model.KIND.namespaced
    (version,) = crd["spec"]["versions"]
    assert version["name"] == model.KIND.version
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    hints = typing.get_type_hints(model)
    problems = compare(hints["spec"], schema["spec"], "spec")
    problems += compare(hints["status"], schema["status"], "status")
    assert not problems, "\n".join(problems)


def test_every_crd_has_a_model() -> None:
    assert set(load_crds()) == {m.KIND.kind for m in HYBRIDNET_KINDS}


def test_the_comparison_notices_a_difference() -> None:
    """Guard against a comparison that passes everything."""

    @dataclasses.dataclass
    class Spec:
        name: str
        size: int | None = None

    schema = {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "size": {"type": "string"}, "x": {}},
    }
    problems = compare(Spec, schema, "spec")
    assert any("spec.size" in p for p in problems)
    assert any("spec.x: in the CRD only" in p for p in problems)
