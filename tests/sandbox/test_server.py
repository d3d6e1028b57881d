"""`qbflow sandbox` as a user starts it: a real server on 127.0.0.1, driven by Intuit's own OAuth client
(intuit-oauth) and by plain HTTP, restarted on the same data file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError

from tests.support.sandbox import running_sandbox

CLIENT_ID = "ABqbflowTestClient0001"
CLIENT_SECRET = "test-secret-0123456789"
REDIRECT_URI = "http://127.0.0.1:9/callback"


def connect(base: str) -> tuple[AuthClient, str]:
    """The whole authorization-code flow with intuit-oauth, as a real app would run it."""
    auth = AuthClient(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI,
                      environment=f"{base}/.well-known/openid_sandbox_configuration")
    assert auth.auth_endpoint == f"{base}/connect/oauth2"
    url = auth.get_authorization_url([Scopes.ACCOUNTING, Scopes.OPENID, Scopes.EMAIL])
    redirect = httpx.get(url, follow_redirects=False)
    assert redirect.status_code in (302, 303)
    location = redirect.headers["location"]
    assert location.startswith(REDIRECT_URI)
    query = parse_qs(urlparse(location).query)
    assert query["state"] == [auth.state_token]
    code, realm = query["code"][0], query["realmId"][0]
    auth.get_bearer_token(code, realm_id=realm)
    return auth, realm


def test_intuit_oauth_client_runs_the_whole_flow_against_the_sandbox(tmp_path: Path):
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit") as (base, _process):
        auth, realm = connect(base)
        assert auth.realm_id == realm
        assert auth.access_token and auth.refresh_token
        assert auth.expires_in == 3600
        assert auth.id_token, "intuit-oauth keeps the id_token only when its RS256 signature verifies"

        api = httpx.Client(base_url=f"{base}/v3/company/{realm}", headers={"Accept": "application/json"})
        info = api.get(f"/companyinfo/{realm}", headers={"Authorization": f"Bearer {auth.access_token}"})
        assert info.status_code == 200 and info.json()["CompanyInfo"]["CompanyName"]

        old_access, old_refresh = auth.access_token, auth.refresh_token
        auth.refresh()
        assert auth.refresh_token != old_refresh and auth.access_token != old_access
        user = auth.get_user_info()
        assert user.status_code == 200 and "email" in user.json()

        auth.revoke()
        refused = api.get("/customer/1", headers={"Authorization": f"Bearer {auth.access_token}"})
        assert refused.status_code == 401
        assert refused.json()["fault"]["error"][0]["code"] == "3200"
        with pytest.raises(AuthClientError) as error:
            auth.refresh()
        assert error.value.status_code == 400


def test_books_and_tokens_survive_a_restart_on_the_same_data_file(tmp_path: Path):
    data = tmp_path / "sandbox.sqlite3"
    args = ("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--data", str(data))
    log = tmp_path / "sandbox.log"
    with running_sandbox(*args, log=log) as (base, _process):
        auth, realm = connect(base)
        headers = {"Authorization": f"Bearer {auth.access_token}", "Accept": "application/json"}
        created = httpx.post(f"{base}/v3/company/{realm}/customer", json={"DisplayName": "Survivor Supply"},
                             headers=headers)
        assert created.status_code == 200
        customer = created.json()["Customer"]
    output = log.read_text()
    assert realm in output and CLIENT_ID in output and "/v3/company/" in output
    with running_sandbox(*args) as (base, _process):
        again = httpx.get(f"{base}/v3/company/{realm}/customer/{customer['Id']}", headers=headers)
        assert again.status_code == 200
        assert again.json()["Customer"]["DisplayName"] == "Survivor Supply"


def test_injected_reset_closes_the_connection_on_a_real_server():
    with running_sandbox("--auto-approve", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                         "--no-rate-limit") as (base, _process):
        auth, realm = connect(base)
        httpx.put(f"{base}/_sandbox/faults", json={"rate": 1.0, "kinds": ["reset"]}).raise_for_status()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/v3/company/{realm}/customer/1",
                      headers={"Authorization": f"Bearer {auth.access_token}"})
        httpx.put(f"{base}/_sandbox/faults", json={"rate": 0}).raise_for_status()
        ok = httpx.get(f"{base}/v3/company/{realm}/customer/1",
                       headers={"Authorization": f"Bearer {auth.access_token}"})
        assert ok.status_code == 200
