# Values the GitHub repository settings and the operator steps need (docs/deploy.md).

output "workload_identity_provider" {
  description = "GitHub Actions variable GCP_WORKLOAD_IDENTITY_PROVIDER."
  value       = google_iam_workload_identity_pool_provider.github.name
}

output "deployer_service_account" {
  description = "GitHub Actions variable GCP_DEPLOYER_SERVICE_ACCOUNT."
  value       = google_service_account.deployer.email
}

output "builder_service_account" {
  value = google_service_account.builder.email
}

output "cloudsql_connection_name" {
  value = google_sql_database_instance.main.connection_name
}

output "cloudsql_private_ip" {
  value = google_sql_database_instance.main.private_ip_address
}

output "redis_host" {
  value = google_redis_instance.cache.host
}

output "judgements_topic" {
  value = google_pubsub_topic.judgements.id
}

output "subscriber_push_endpoint" {
  value = google_pubsub_subscription.push.push_config[0].push_endpoint
}

output "image_repository" {
  value = "${local.region}-docker.pkg.dev/${local.project}/${google_artifact_registry_repository.images.repository_id}"
}

output "model_registry" {
  value = "gs://${google_storage_bucket.models.name}"
}

output "runtime_service_accounts" {
  value = { for role, sa in google_service_account.runtime : role => sa.email }
}
