"""Deploy ↔ code drift: every GUARDRAIL_* variable a rendered manifest (or the service image) sets is
a real field of guardrail.config.Settings, and each service's environment builds a valid Settings.

`Settings` ignores unknown variables (extra="ignore"), so a renamed or misspelt variable in the
manifests would otherwise be dropped silently and the service would run on a default.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices, SecretStr
from pydantic_settings import EnvSettingsSource

from deploy.config import DeployConfig, load_config
from guardrail.adapters.pubsub import resource
from guardrail.config import Settings
from guardrail.db.session import cloudsql_target
from tests.deploy.helpers import CONFIG, ROOT, containers, dockerfile_instructions, last_stage, render_into

PREFIX = str(Settings.model_config.get("env_prefix", ""))
SERVICE_DOCKERFILE = ROOT / "Dockerfile"


def env_names() -> dict[str, str]:
    """{ENVIRONMENT VARIABLE: field name} as pydantic-settings reads them (case-insensitive here).

    A field without a validation alias is read from PREFIX + name; a field with one is read from
    the alias (or each of its AliasChoices) as written, without the prefix.
    """
    assert Settings.model_config.get("case_sensitive") in (None, False), "names below are upper-cased"
    names: dict[str, str] = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if alias is None:
            choices: list[Any] = [f"{PREFIX}{field}"]
        elif isinstance(alias, AliasChoices):
            choices = list(alias.choices)
        else:
            choices = [alias]
        for choice in choices:
            if isinstance(choice, str):  # an AliasPath is not an environment variable
                names[choice.upper()] = field
    return names


def image_env(dockerfile: Path) -> dict[str, str]:
    """GUARDRAIL_* variables the final stage of a Dockerfile sets with ENV (KEY=value form)."""
    env: dict[str, str] = {}
    for word, args in last_stage(dockerfile_instructions(dockerfile)):
        if word == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {args!r}: use the KEY=value form"
                if key.startswith(PREFIX):
                    env[key] = value
    return env


def dummy_secrets(cfg: DeployConfig) -> dict[str, str]:
    """A value of the real shape for every Secret Manager secret a manifest may reference.

    A new secret without an entry here fails the test: say what its value looks like.
    """
    return {
        cfg.secrets.admin_token: "adm-" + "A1b2C3d4" * 6,                          # >= 16 chars
        cfg.secrets.dashboard_session: "Zx9" * 16,                               # 48 chars, as generated: [A-Za-z0-9]
        # As data.tf writes it: TLS, AUTH string, private IP, the CA mounted from the redis-ca secret.
        cfg.secrets.redis_url: ("rediss://:" + "f" * 36
                                + "@10.20.0.4:6378/0?ssl_ca_certs=/secrets/redis-ca/server-ca.pem"),
    }


def service_containers(manifests: dict[str, dict[str, Any]], cfg: DeployConfig) -> list[tuple[str, dict[str, Any]]]:
    """(service, container) for every container running the service image (not the vLLM sidecar)."""
    found = [(name, c) for name, m in manifests.items() for c in containers(m)
             if c["image"] == cfg.image_ref("service")]
    assert sorted(n for n, _ in found) == ["judge", "management", "subscriber"], found
    return found


def effective_env(c: dict[str, Any], secrets: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(every GUARDRAIL_* variable the container sees with secrets resolved, the plain-value subset)."""
    plain = image_env(SERVICE_DOCKERFILE)
    resolved = dict(plain)
    for e in c.get("env", []):
        if "value" in e:
            plain[e["name"]] = e["value"]
            resolved[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]["name"]
            assert ref in secrets, f"{e['name']}: no dummy value for secret {ref!r} (add one to dummy_secrets)"
            resolved[e["name"]] = secrets[ref]
            plain.pop(e["name"], None)
    return resolved, plain


def as_env_text(value: object) -> str:
    """A parsed Settings value written back the way an environment variable spells it."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_settings_env_names_follow_prefix_and_aliases() -> None:
    names = env_names()
    assert PREFIX == "GUARDRAIL_"
    assert names["GUARDRAIL_DATABASE_URL"] == "database_url"
    assert names["GUARDRAIL_DASHBOARD_SESSION_SECRET"] == "dashboard_session_secret"
    # An aliased field is read from its aliases only (here with and without the prefix).
    assert names["PUBSUB_EMULATOR_HOST"] == names["GUARDRAIL_PUBSUB_EMULATOR_HOST"] == "pubsub_emulator_host"


def test_every_guardrail_variable_is_a_settings_field(tmp_path: Path) -> None:
    manifests = render_into(tmp_path)
    names = env_names()
    seen = 0
    for service, m in manifests.items():
        for c in containers(m):
            for e in c.get("env", []):
                if e["name"].upper().startswith(PREFIX) or e["name"].upper() in names:
                    seen += 1
                    assert e["name"].upper() in names, (
                        f"{service}/{c['name']}: {e['name']} is not a field of guardrail.config.Settings "
                        "(it would be ignored silently)")
    assert seen >= 30, "the manifests set the service's configuration through GUARDRAIL_* variables"
    for key in image_env(SERVICE_DOCKERFILE):
        assert key.upper() in names, f"Dockerfile ENV {key} is not a Settings field"


@pytest.mark.parametrize("service", ["judge", "management", "subscriber"])
def test_each_service_environment_builds_valid_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    cfg = load_config(CONFIG)
    manifests = render_into(tmp_path)
    names = env_names()
    (container,) = [c for s, c in service_containers(manifests, cfg) if s == service]
    resolved, plain = effective_env(container, dummy_secrets(cfg))
    # Only the manifest's environment: nothing from this machine (CI sets GUARDRAIL_* for other tests).
    for key in list(os.environ):
        if key.upper() in names:
            monkeypatch.delenv(key)
    for key, value in resolved.items():
        monkeypatch.setenv(key, value)

    unknown = sorted(k for k in resolved if k.upper() not in names)
    assert not unknown, f"{service}: not Settings fields (ignored silently): {unknown}"
    # pydantic-settings itself reads one field per variable: none is dropped, none collides.
    read = EnvSettingsSource(Settings)()
    assert len(read) == len({names[k.upper()] for k in resolved}) == len(resolved), (sorted(read), sorted(resolved))

    settings = Settings()  # must not raise: production checks included (environment=production)
    assert settings.environment == "production" and settings.role == service
    for key, literal in plain.items():
        parsed = getattr(settings, names[key.upper()])
        assert as_env_text(parsed) == literal, f"{service}: {key}={literal!r} parsed as {parsed!r}"
    for key, value in resolved.items():
        if key not in plain:  # a secret reference: the dummy value arrived intact
            assert as_env_text(getattr(settings, names[key.upper()])) == value, key

    # What the code makes of the values: the Cloud SQL IAM user and database the connector uses,
    # and (judge) the topic events are published to.
    assert settings.cloudsql_instance == cfg.cloudsql_connection_name
    user, password, database = cloudsql_target(settings.database_url)
    assert (user, password, database) == (cfg.db_user(service), None, cfg.database.name)
    if service == "judge":
        assert settings.pubsub_topic
        assert resource("topics", settings.pubsub_topic, settings.pubsub_project) == cfg.topic_path


def test_production_refuses_the_management_role_without_the_dashboard_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the reference matters: drop it from the rendered management env and Settings() refuses."""
    cfg = load_config(CONFIG)
    names = env_names()
    (container,) = [c for s, c in service_containers(render_into(tmp_path), cfg) if s == "management"]
    resolved, _ = effective_env(container, dummy_secrets(cfg))
    for key in list(os.environ):
        if key.upper() in names:
            monkeypatch.delenv(key)
    for key, value in resolved.items():
        if key != "GUARDRAIL_DASHBOARD_SESSION_SECRET":
            monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="GUARDRAIL_DASHBOARD_SESSION_SECRET"):
        Settings()
