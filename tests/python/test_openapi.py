"""The published OpenAPI document (docs/openapi.json, generated from the server's code) is a valid
OpenAPI 3.1 document, and it describes what the server really exchanges: every golden request
(tests/golden/*.query.json) is valid against the `AnalysisRequest` schema, and every golden answer
(*.result.json, the engine's output on a fixed seed) is valid against the answer schema of its
endpoint. Checked with independent validators (openapi-spec-validator, jsonschema)."""

import json
from pathlib import Path

import jsonschema
import pytest
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parents[2]
DOC = json.loads((ROOT / "docs" / "openapi.json").read_text())
GOLDEN = sorted((ROOT / "tests" / "golden").glob("*.query.json"))


def validator(ref: str) -> jsonschema.Draft202012Validator:
    """A validator of the component `ref` points to, its references resolved in the document."""
    schema = {"$ref": ref, "components": DOC["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_the_document_is_valid_openapi():
    validate(DOC)
    assert DOC["openapi"].startswith("3.1")
    assert len(DOC["paths"]) > 25


def test_there_are_golden_cases():
    assert len(GOLDEN) >= 20


@pytest.mark.parametrize("query", GOLDEN, ids=lambda p: p.name.removesuffix(".query.json"))
def test_golden_requests_and_answers_match_the_document(query: Path):
    case = json.loads(query.read_text())
    request = case["request"]
    validator("#/components/schemas/AnalysisRequest").validate(request)
    (kind,) = request.keys()
    op = DOC["paths"][f"/api/v1/{kind}"]["post"]
    body_ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    validator(body_ref).validate(request[kind])
    answer_ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    answer = json.loads(query.with_name(query.name.replace(".query.", ".result.")).read_text())
    validator(answer_ref).validate(answer)


def test_a_wrong_request_is_refused_by_the_schema():
    """The schemas are strict where the server is: unknown fields and wrong types are errors."""
    v = validator("#/components/schemas/FunnelQuery")
    v.validate({"steps": [{"match": "a"}, {"match": "b"}], "window": "7d"})
    with pytest.raises(jsonschema.ValidationError):
        v.validate({"steps": [{"match": "a"}, {"match": "b"}]})  # the window is required
    with pytest.raises(jsonschema.ValidationError):
        v.validate({"steps": [{"match": "a"}], "window": "7d", "windw": "7d"})
    with pytest.raises(jsonschema.ValidationError):
        v.validate({"steps": "a"})
