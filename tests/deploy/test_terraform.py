"""Terraform under deploy/terraform, parsed with python-hcl2 and checked resource by resource."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import hcl2
import pytest
import yaml

from deploy import render
from tests.deploy.helpers import CONFIG, TERRAFORM


@cache
def parsed() -> dict[str, list[Any]]:
    """All blocks of all .tf files, merged by block kind."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open(encoding="utf-8") as fh:
            for kind, blocks in hcl2.load(fh).items():
                merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(rtype: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in parsed().get("resource", []):
        for name, body in block.get(rtype, {}).items():
            found[name] = body
    return found


def one(rtype: str, name: str) -> dict[str, Any]:
    res = resources(rtype)
    assert name in res, f"missing resource {rtype}.{name}"
    return res[name]


def nested(body: dict[str, Any], *path: str) -> dict[str, Any]:
    """Blocks parse as lists of one mapping: walk them."""
    for key in path:
        value = body[key]
        body = value[0] if isinstance(value, list) else value
    return body


def tf_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(TERRAFORM.glob("*.tf")))


def config() -> dict[str, Any]:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


REQUIRED = [
    "google_compute_network", "google_compute_subnetwork", "google_compute_global_address",
    "google_service_networking_connection", "google_sql_database_instance", "google_sql_database",
    "google_sql_user", "google_redis_instance", "google_pubsub_topic", "google_pubsub_subscription",
    "google_artifact_registry_repository", "google_secret_manager_secret", "google_service_account",
    "google_storage_bucket", "google_iam_workload_identity_pool", "google_iam_workload_identity_pool_provider",
    "google_project_service", "random_password", "google_secret_manager_secret_version",
]


@pytest.mark.parametrize("rtype", REQUIRED)
def test_every_required_resource_exists(rtype: str) -> None:
    assert resources(rtype), f"no {rtype} in deploy/terraform"


def test_terraform_reads_the_one_config_and_every_reference_resolves() -> None:
    (locals_block,) = [b for b in parsed()["locals"] if "cfg" in b]
    assert "yamldecode(file(" in locals_block["cfg"] and "../config.yaml" in locals_block["cfg"]
    cfg = config()
    paths = set(re.findall(r"local\.cfg((?:\.\w+)+)", tf_text()))
    assert len(paths) > 20
    for path in paths:
        node: Any = cfg
        for part in path.strip(".").split("."):
            assert isinstance(node, dict) and part in node, f"local.cfg{path} is not in deploy/config.yaml"
            node = node[part]


def test_cloud_sql_private_ip_and_iam_auth() -> None:
    sql = one("google_sql_database_instance", "main")
    settings = nested(sql, "settings")
    ip = nested(settings, "ip_configuration")
    assert ip["ipv4_enabled"] is False, "no public IP"
    assert ip["private_network"] == "${google_compute_network.vpc.id}"
    assert ip["ssl_mode"] == "ENCRYPTED_ONLY"
    flags = {f["name"]: f["value"] for f in settings["database_flags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    assert "google_service_networking_connection.private_services" in str(sql["depends_on"])
    user = one("google_sql_user", "runtime")
    assert user["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert "trimsuffix" in user["name"] and ".gserviceaccount.com" in user["name"]
    assert "password" not in user
    assert one("google_sql_database", "guardrail")["name"] == "${local.cfg.database.name}"


def test_memorystore_in_the_vpc() -> None:
    redis = one("google_redis_instance", "cache")
    assert redis["authorized_network"] == "${google_compute_network.vpc.id}"
    assert redis["connect_mode"] == "PRIVATE_SERVICE_ACCESS"
    assert redis["auth_enabled"] is True
    assert redis["transit_encryption_mode"] == "SERVER_AUTHENTICATION"
    url = one("google_secret_manager_secret_version", "redis_url")["secret_data"]
    assert url.startswith("rediss://") and "ssl_ca_certs=${local.redis_ca_path}" in url
    (locals_block,) = [b for b in parsed()["locals"] if "redis_ca_path" in b]
    assert locals_block["redis_ca_path"] == f"{render.REDIS_CA_DIR}/{render.REDIS_CA_FILE}"


def test_pubsub_push_subscription_with_oidc_and_dead_letter() -> None:
    sub = one("google_pubsub_subscription", "push")
    assert sub["topic"] == "${google_pubsub_topic.judgements.id}"
    push = nested(sub, "push_config")
    assert push["push_endpoint"] == "${local.subscriber_url}${local.cfg.pubsub.push_path}"
    oidc = nested(push, "oidc_token")
    assert oidc["service_account_email"] == "${google_service_account.push.email}"
    assert oidc["audience"] == "${local.cfg.pubsub.push_audience}"
    dlq = nested(sub, "dead_letter_policy")
    assert dlq["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    # Attempts and backoff come from deploy/config.yaml (validated there: 5..100 attempts, 0..600 s),
    # the same keys the subscriber's GUARDRAIL_PUBSUB_MAX_DELIVERY_ATTEMPTS is rendered from.
    assert dlq["max_delivery_attempts"] == "${local.cfg.pubsub.max_delivery_attempts}"
    assert 5 <= config()["pubsub"]["max_delivery_attempts"] <= 100
    retry = nested(sub, "retry_policy")
    assert retry == {"minimum_backoff": "${local.cfg.pubsub.min_backoff_seconds}s",
                     "maximum_backoff": "${local.cfg.pubsub.max_backoff_seconds}s"}
    assert {"google_pubsub_topic.judgements", "google_pubsub_topic.dead_letter"} <= {
        f"google_pubsub_topic.{n}" for n in resources("google_pubsub_topic")}
    # Dead letters are kept (a topic without a subscription drops them) ...
    assert one("google_pubsub_subscription", "dead_letter")["topic"] == "${google_pubsub_topic.dead_letter.id}"
    # ... and the Pub/Sub service agent can dead-letter and mint the push tokens.
    assert one("google_pubsub_topic_iam_member", "dead_letter_publisher")["member"] == "${local.pubsub_agent}"
    assert one("google_pubsub_subscription_iam_member", "dead_letter_subscriber")["role"] == "roles/pubsub.subscriber"
    assert one("google_service_account_iam_member", "push_token_creator")["member"] == "${local.pubsub_agent}"
    invoker = one("google_cloud_run_v2_service_iam_member", "push_invoker")
    assert invoker["role"] == "roles/run.invoker" and "google_service_account.push.email" in invoker["member"]


def test_registry_bucket_and_secrets() -> None:
    repo = one("google_artifact_registry_repository", "images")
    assert repo["format"] == "DOCKER"
    assert nested(repo, "docker_config")["immutable_tags"] is True
    models = one("google_storage_bucket", "models")
    assert models["name"] == "${local.cfg.buckets.models}"
    assert models["uniform_bucket_level_access"] is True
    assert models["public_access_prevention"] == "enforced"
    assert nested(models, "versioning")["enabled"] is True
    secrets = one("google_secret_manager_secret", "secret")["for_each"]
    assert set(secrets) == set(config()["secrets"]) - {"version"}
    assert all(v == f"${{local.cfg.secrets.{k}}}" for k, v in secrets.items())


def test_dashboard_session_secret_generated_and_readable_by_management_only() -> None:
    secrets = one("google_secret_manager_secret", "secret")["for_each"]
    assert secrets["dashboard_session"] == "${local.cfg.secrets.dashboard_session}"
    password = one("random_password", "dashboard_session")
    assert password["length"] >= 48, "at least 48 random characters (the service requires >= 32)"
    assert password.get("special") is False, "alphanumeric: safe in an environment variable"
    version = one("google_secret_manager_secret_version", "dashboard_session")
    assert version["secret"] == '${google_secret_manager_secret.secret["dashboard_session"].id}'
    assert version["secret_data"] == "${random_password.dashboard_session.result}"
    # Readers of this secret: the management service account, and nobody else.
    readers = [v for v in parsed_locals()["secret_readers"].values() if v["secret"] == "dashboard_session"]
    assert readers == [{"sa": "management", "secret": "dashboard_session"}]
    binding = one("google_secret_manager_secret_iam_member", "readers")
    assert binding["role"] == "roles/secretmanager.secretAccessor"
    assert binding["member"] == "serviceAccount:${google_service_account.runtime[each.value.sa].email}"
    for rtype in ("google_secret_manager_secret_iam_member", "google_secret_manager_secret_iam_binding",
                  "google_secret_manager_secret_iam_policy", "google_project_iam_member"):
        for name, body in resources(rtype).items():
            if name != "readers":
                assert "dashboard_session" not in str(body), f"{rtype}.{name} grants the dashboard secret"
    assert "secretmanager" not in str(one("google_project_iam_member", "cloudsql")), "no project-wide secret access"


def test_providers_are_pinned_to_a_major_version() -> None:
    (terraform,) = parsed()["terraform"]
    providers: dict[str, Any] = {}
    for block in terraform["required_providers"]:
        providers.update(block)
    assert {"google", "random"} <= set(providers)
    for name, spec in providers.items():
        assert spec["source"] == f"hashicorp/{name}", spec
        lower, upper = (part.strip() for part in spec["version"].split(","))
        assert re.fullmatch(r">= \d+\.\d+(\.\d+)?", lower), spec  # a floor ...
        assert re.fullmatch(r"< \d+\.0", upper), spec                # ... and no next major version
    # Every resource type in use comes from a declared provider.
    used = {rtype.split("_", 1)[0] for block in parsed()["resource"] for rtype in block}
    assert used <= set(providers), used - set(providers)


def test_direct_vpc_egress_network() -> None:
    subnet = one("google_compute_subnetwork", "run")
    assert subnet["network"] == "${google_compute_network.vpc.id}"
    assert subnet["ip_cidr_range"] == "${local.cfg.network.subnet_cidr}"
    assert subnet["private_ip_google_access"] is True
    assert one("google_compute_network", "vpc")["auto_create_subnetworks"] is False
    assert one("google_compute_global_address", "private_services")["purpose"] == "VPC_PEERING"


ALLOWED_ROLES = {
    "roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/secretmanager.secretAccessor",
    "roles/pubsub.publisher", "roles/pubsub.subscriber", "roles/iam.serviceAccountTokenCreator",
    "roles/run.invoker", "roles/run.developer", "roles/cloudbuild.builds.editor", "roles/iam.serviceAccountUser",
    "roles/artifactregistry.writer", "roles/storage.objectAdmin", "roles/storage.objectViewer",
    "roles/logging.logWriter", "roles/iam.workloadIdentityUser",
}


def test_least_privilege_iam() -> None:
    text = tf_text()
    roles = set(re.findall(r'"(roles/[\w.]+)"', text))
    assert roles <= ALLOWED_ROLES, roles - ALLOWED_ROLES
    for basic in ("roles/owner", "roles/editor", "roles/viewer", "roles/run.admin", "roles/iam.serviceAccountAdmin"):
        assert basic not in text
    assert "google_service_account_key" not in text, "no key files: Workload Identity Federation only"
    # One identity per service, plus push, deployer and builder.
    assert one("google_service_account", "runtime")["for_each"] == "${toset(local.runtime_roles)}"
    assert parsed_locals()["runtime_roles"] == ["judge", "management", "subscriber"]
    assert {"push", "deployer", "builder"} <= set(resources("google_service_account"))
    # Project-wide Cloud SQL roles are pinned to the one instance by an IAM condition.
    sql = one("google_project_iam_member", "cloudsql")
    assert "instances/${local.cfg.database.instance}" in parsed_locals()["cloudsql_condition"]
    assert nested(sql, "condition")["expression"] == "${local.cloudsql_condition}"
    # The deployer's public-access permission is only for the two public services.
    custom = one("google_project_iam_custom_role", "run_public_access")
    assert set(custom["permissions"]) == {"run.services.getIamPolicy", "run.services.setIamPolicy"}
    assert "condition" in one("google_project_iam_member", "deployer_public_access")
    # Project-level grants are these and no more; secrets, topics, buckets and the repository are
    # granted on the resource itself.
    assert set(resources("google_project_iam_member")) == {"cloudsql", "deployer", "deployer_public_access",
                                                          "builder_logs"}
    assert parsed_locals()["deployer_project_roles"] == ["roles/run.developer", "roles/cloudbuild.builds.editor"]
    assert one("google_secret_manager_secret_iam_member", "readers")["secret_id"].startswith(
        "${google_secret_manager_secret.secret[")


def parsed_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in parsed()["locals"]:
        merged.update(block)
    return merged


def test_workload_identity_federation_for_github() -> None:
    provider = one("google_iam_workload_identity_pool_provider", "github")
    assert nested(provider, "oidc")["issuer_uri"] == "https://token.actions.githubusercontent.com"
    assert "assertion.repository == '${local.cfg.github.repository}'" in provider["attribute_condition"]
    assert "assertion.ref" in provider["attribute_condition"]
    binding = one("google_service_account_iam_member", "deployer_wif")
    assert binding["role"] == "roles/iam.workloadIdentityUser"
    assert binding["member"].startswith("principalSet://iam.googleapis.com/")
    assert "attribute.repository/${local.cfg.github.repository}" in binding["member"]


def test_outputs_for_the_pipeline() -> None:
    outputs = {name for block in parsed()["output"] for name in block}
    assert {"workload_identity_provider", "deployer_service_account", "cloudsql_connection_name"} <= outputs
