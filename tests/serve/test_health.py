from fastapi.testclient import TestClient

from maskops import __version__
from maskops.serve.app import create_app


def test_health_reports_ok_and_version() -> None:
    with TestClient(create_app()) as client:
        r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": __version__}


def test_index_page_is_served() -> None:
    with TestClient(create_app()) as client:
        r = client.get("/")
    assert r.status_code == 200
    assert "maskops" in r.text
