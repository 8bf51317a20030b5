"""Bad input gets a JSON error with a code and message, never HTML or a traceback."""


def assert_json_error(response, status, code):
    assert response.status_code == status
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["status"] == "error"
    assert body["data"]["code"] == code and body["error"] == code
    assert body["message"] and body["data"]["message"] == body["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    assert "<html" not in response.get_data(as_text=True).lower()
    return body


def test_unknown_route_is_json_404(client):
    body = assert_json_error(client.get("/no/such/page"), 404, "NotFound")
    assert body["request_id"]


def test_wrong_method_is_json_405_with_allow(client):
    response = client.delete("/health")
    assert_json_error(response, 405, "MethodNotAllowed")
    assert "GET" in response.headers["Allow"]


def test_oversized_body_is_json_413(make_app):
    app = make_app(MAX_REQUEST_BYTES="2048")
    response = app.test_client().post("/health", data=b"x" * 4096, content_type="application/octet-stream")
    assert_json_error(response, 413, "RequestEntityTooLarge")


def test_unhandled_exception_is_json_500_with_request_id_and_no_detail(make_app):
    app = make_app()

    @app.get("/explode")
    def explode():
        raise RuntimeError("secret internals must not leak")

    response = app.test_client().get("/explode", headers={"X-Request-Id": "req-abc-123"})
    body = assert_json_error(response, 500, "InternalServerError")
    assert body["request_id"] == "req-abc-123"
    assert response.headers["X-Request-Id"] == "req-abc-123"
    assert "secret internals" not in response.get_data(as_text=True)
