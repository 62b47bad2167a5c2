"""The function's Secrets Manager client: SECRETS_MANAGER_ENDPOINT when set, else botocore's
own endpoint resolution (regional, FIPS, dual-stack), which a fixed URL would override."""

from __future__ import annotations

import pytest

from rotation.config import ENDPOINT, Settings
from rotation.dispatcher import make_client

REGION = "us-east-1"
VPC_ENDPOINT = "https://vpce-0123456789abcdef0-abcdefgh.secretsmanager.us-east-1.vpce.amazonaws.com"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A region and nothing from the machine's AWS configuration that could move the endpoint."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    for name in ("AWS_REGION", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", ENDPOINT):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "https://secretsmanager.us-east-1.amazonaws.com"),
    ({ENDPOINT: ""}, "https://secretsmanager.us-east-1.amazonaws.com"),
    ({ENDPOINT: "  "}, "https://secretsmanager.us-east-1.amazonaws.com"),
    ({"AWS_USE_FIPS_ENDPOINT": "true"}, "https://secretsmanager-fips.us-east-1.amazonaws.com"),
    ({"AWS_USE_DUALSTACK_ENDPOINT": "true"}, "https://secretsmanager.us-east-1.api.aws"),
    ({"AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "true"},
     "https://secretsmanager-fips.us-east-1.api.aws"),
    # a given endpoint wins, FIPS setting or not (the deployer chose it)
    ({ENDPOINT: VPC_ENDPOINT}, VPC_ENDPOINT),
    ({ENDPOINT: VPC_ENDPOINT, "AWS_USE_FIPS_ENDPOINT": "true"}, VPC_ENDPOINT),
], ids=["unset", "empty", "blank", "fips", "dual-stack", "fips-dual-stack", "given",
        "given-beats-fips"])
def test_endpoint_is_botocores_unless_given(aws_env: pytest.MonkeyPatch, env: dict[str, str],
                                            expected: str) -> None:
    # GIVEN the function's environment (the template sets SECRETS_MANAGER_ENDPOINT only when its
    # endpoint parameter is given)
    for name, value in env.items():
        aws_env.setenv(name, value)
    # WHEN the function builds its client, as the handler does
    settings = Settings.from_env()
    client = make_client(settings)
    # THEN the endpoint is the given one, or the one botocore resolves for the region and the
    # FIPS / dual-stack settings
    assert settings.endpoint_url == (env[ENDPOINT].strip() or None if ENDPOINT in env else None)
    assert client.meta.endpoint_url == expected
    assert client.meta.region_name == REGION
