# Artifact Registry for both images, the GCS model registry, the Cloud Build source bucket and
# the Secret Manager secrets the services reference.

resource "google_artifact_registry_repository" "images" {
  location      = local.region
  repository_id = local.cfg.artifact_repository
  format        = "DOCKER"
  description   = "Guardrail service and weight-baked vLLM images"

  docker_config {
    immutable_tags = true # a deployed tag always means the same image
  }

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 30
    }
  }

  depends_on = [google_project_service.apis]
}

# Model registry: gs://BUCKET/SERVED_MODEL_NAME/VERSION/ (weights, tokenizer, SHA256SUMS).
resource "google_storage_bucket" "models" {
  name                        = local.cfg.buckets.models
  location                    = upper(local.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }
}

resource "google_storage_bucket" "build_source" {
  name                        = local.cfg.buckets.build_source
  location                    = upper(local.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  lifecycle_rule {
    condition {
      age = 14
    }
    action {
      type = "Delete"
    }
  }
}

# Secret containers. Values: the admin token is added by an operator
# (`gcloud secrets versions add`), the Redis URL and CA by data.tf, the dashboard session
# secret by secrets.tf (generated).
resource "google_secret_manager_secret" "secret" {
  for_each = {
    admin_token       = local.cfg.secrets.admin_token
    redis_url         = local.cfg.secrets.redis_url
    redis_ca          = local.cfg.secrets.redis_ca
    dashboard_session = local.cfg.secrets.dashboard_session
  }
  secret_id = each.value

  replication {
    user_managed {
      replicas {
        location = local.region
      }
    }
  }

  depends_on = [google_project_service.apis]
}
