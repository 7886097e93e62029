# Least-privilege identities. Every grant is scoped to the one resource it is for wherever the
# API allows it; no basic roles (owner/editor/viewer) anywhere.

resource "google_service_account" "runtime" {
  for_each     = toset(local.runtime_roles)
  account_id   = local.cfg.service_accounts[each.key]
  display_name = "Guardrail ${each.key} service (Cloud Run)"
}

resource "google_service_account" "push" {
  account_id   = local.cfg.service_accounts.push
  display_name = "Guardrail Pub/Sub push identity (OIDC to the log subscriber)"
}

resource "google_service_account" "deployer" {
  account_id   = local.cfg.service_accounts.deployer
  display_name = "Guardrail GitHub Actions deployer (Workload Identity Federation)"
}

resource "google_service_account" "builder" {
  account_id   = local.cfg.service_accounts.builder
  display_name = "Guardrail Cloud Build (weight-baked vLLM image)"
}

locals {
  # Cloud SQL roles exist only at project level: an IAM condition pins them to our instance.
  cloudsql_condition = "resource.name == 'projects/${local.project}/instances/${local.cfg.database.instance}' && resource.service == 'sqladmin.googleapis.com'"
  cloudsql_grants = {
    for pair in setproduct(local.runtime_roles, ["roles/cloudsql.client", "roles/cloudsql.instanceUser"]) :
    "${pair[0]} ${pair[1]}" => { sa = pair[0], role = pair[1] }
  }

  secret_readers = {
    "judge redis_url"      = { sa = "judge", secret = "redis_url" }
    "judge redis_ca"       = { sa = "judge", secret = "redis_ca" }
    "management redis_url" = { sa = "management", secret = "redis_url" }
    "management redis_ca"  = { sa = "management", secret = "redis_ca" }
    "management admin"     = { sa = "management", secret = "admin_token" }
    # Only the service that serves /dashboard can read the key that signs its sessions.
    "management dashboard_session" = { sa = "management", secret = "dashboard_session" }
  }

  deployer_project_roles = ["roles/run.developer", "roles/cloudbuild.builds.editor"]

  # Services whose manifests disable the invoker IAM check (callers use guardrail API keys).
  public_services = [local.cfg.services.judge.name, local.cfg.services.management.name]
}

resource "google_project_iam_member" "cloudsql" {
  for_each = local.cloudsql_grants
  project  = local.project
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.runtime[each.value.sa].email}"

  condition {
    title      = "guardrail-cloudsql-instance-only"
    expression = local.cloudsql_condition
  }
}

resource "google_secret_manager_secret_iam_member" "readers" {
  for_each  = local.secret_readers
  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime[each.value.sa].email}"
}

# --- deployer (GitHub Actions) -------------------------------------------------------------

resource "google_project_iam_member" "deployer" {
  for_each = toset(local.deployer_project_roles)
  project  = local.project
  role     = each.value
  member   = "serviceAccount:${google_service_account.deployer.email}"
}

# run.developer cannot change a service's IAM policy, which disabling the invoker IAM check needs
# (run.googleapis.com/invoker-iam-disabled in the rendered manifests). Instead of run.admin: just
# that permission, and only on the two public services.
resource "google_project_iam_custom_role" "run_public_access" {
  role_id     = "guardrailRunPublicAccess"
  title       = "Guardrail: manage public access of its Cloud Run services"
  permissions = ["run.services.getIamPolicy", "run.services.setIamPolicy"]
}

resource "google_project_iam_member" "deployer_public_access" {
  project = local.project
  role    = google_project_iam_custom_role.run_public_access.id
  member  = "serviceAccount:${google_service_account.deployer.email}"

  condition {
    title      = "guardrail-public-services-only"
    expression = join(" || ", [for s in local.public_services : "resource.name.endsWith('/services/${s}')"])
  }
}

# Deploying a service that runs as X requires actAs on X: only these accounts.
resource "google_service_account_iam_member" "deployer_act_as" {
  for_each = merge(
    { for role in local.runtime_roles : role => google_service_account.runtime[role].name },
    { builder = google_service_account.builder.name },
  )
  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_artifact_registry_repository_iam_member" "writers" {
  for_each   = { deployer = google_service_account.deployer.email, builder = google_service_account.builder.email }
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${each.value}"
}

resource "google_storage_bucket_iam_member" "deployer_build_source" {
  bucket = google_storage_bucket.build_source.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.deployer.email}"
}

# --- builder (Cloud Build for the inference image) ------------------------------------------

resource "google_storage_bucket_iam_member" "builder_read" {
  for_each = { models = google_storage_bucket.models.name, source = google_storage_bucket.build_source.name }
  bucket   = each.value
  role     = "roles/storage.objectViewer"
  member   = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_project_iam_member" "builder_logs" {
  project = local.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.builder.email}"
}
