"""What the trainer says when an MLflow call fails: the server's answer, in the words of both
client forms (a call repeated until its retries ran out, and one made once), or its silence."""

import pytest

from services.core.tracking import describe

pytestmark = pytest.mark.unit

URI = "http://mlflow:5000"


@pytest.mark.parametrize(
    ("client_said", "said"),
    [
        (
            "API request to http://mlflow:5000/api/2.0/mlflow/registered-models/alias failed "
            "with exception HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded "
            "with url: /api/2.0/mlflow/registered-models/alias?name=x (Caused by "
            "ResponseError('too many 500 error responses'))",
            "MLflow at http://mlflow:5000 answered HTTP 500 to "
            "/api/2.0/mlflow/registered-models/alias?name=x, at every try",
        ),
        (
            "API request to endpoint /api/2.0/mlflow/registered-models/alias failed with error "
            "code 403 != 200. Response body: 'Permission denied'",
            "MLflow at http://mlflow:5000 answered HTTP 403 to "
            "/api/2.0/mlflow/registered-models/alias: Permission denied",
        ),
        (
            "API request to http://mlflow:5000/api/2.0/mlflow/runs/get failed with exception "
            "HTTPConnectionPool(host='mlflow', port=5000): Read timed out. (read timeout=5)",
            "MLflow at http://mlflow:5000 stopped answering (no answer in time): "
            "is the server running?",
        ),
    ],
)
def test_a_failed_call_is_said_as_what_the_server_did(client_said, said):
    assert describe(RuntimeError(client_said), URI) == said
