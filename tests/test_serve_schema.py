"""The OpenAPI spec against the answers (issue 12: item 9): Schemathesis generates requests for
every documented operation from the spec itself and checks that each answer's status code,
content type, headers and body are the ones the spec declares, and that none is a 5xx.

Bounded: a fixed number of examples per operation, no deadline (an answer that reaches the
models takes a tiny-model inference), in-process on the tiny models.
"""
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tryon.pipeline import TryOn
from tryon.serve import create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
EXAMPLES_PER_OPERATION = 25


def test_every_answer_is_the_one_the_spec_declares(tiny_models_dir):
    tryon = TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False)
    app = create_app(tryon, allowed_hosts=("localhost", "testserver"))  # the host the ASGI client names
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_declared(case):
            case.call_and_validate(checks=CHECKS)

        answers_as_declared()
        checked.append(operation.label)
    assert len(checked) >= 10, checked  # every route, not an empty spec
