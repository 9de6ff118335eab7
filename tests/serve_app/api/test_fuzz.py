"""Property-based fuzz of the OpenAPI schema (schemathesis + Hypothesis) against the app in-process, signed in as
admin: no generated request may get a 5xx. Bounded: a few examples per operation, derandomized (reproducible)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

Api = Any  # the conftest's Api
EXAMPLES = 5
#: operations whose path parameter is replaced by a real id, so the body reaches the deep checks
REAL_IDS = {"/api/v1/deployments/{deployment_id}/predict", "/api/v1/deployments/{deployment_id}/predict_batch"}


def test_no_server_errors(api: Api, make_model: Callable[..., dict[str, Any]]) -> None:
    headers = api.as_role("admin")
    model = make_model()
    deployment_id = api.client.post(f"/api/v1/models/{model['id']}/deploy", headers=headers).json()["deployment_id"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: Any) -> None:
            if case.operation.path in REAL_IDS:
                case.path_parameters = {"deployment_id": deployment_id}
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        run()
    print(dict(statuses))
    # the requests reached the handlers: successes as well as each kind of refusal
    assert statuses.total() >= 20 * EXAMPLES // 2 and {200, 404, 422} <= set(statuses), statuses
    assert not failures, "\n".join(failures[:10])
