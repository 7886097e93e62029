# One config for everything: the same deploy/config.yaml the Cloud Run manifests are rendered
# from, so service, account, secret, topic and network names cannot drift between the two.

locals {
  cfg     = yamldecode(file("${path.module}/../config.yaml"))
  project = local.cfg.project
  region  = local.cfg.region

  project_number = data.google_project.this.number
  pubsub_agent   = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Runtime identities of the three Cloud Run services (each its own least-privilege account).
  runtime_roles = ["judge", "management", "subscriber"]

  # Cloud Run's deterministic URL for the log subscriber: https://SERVICE-PROJECT_NUMBER.REGION.run.app
  subscriber_url = "https://${local.cfg.services.subscriber.name}-${local.project_number}.${local.region}.run.app"

  # Must match deploy/render.py (REDIS_CA_DIR / REDIS_CA_FILE), where the CA secret is mounted.
  redis_ca_path = "/secrets/redis-ca/server-ca.pem"
}

data "google_project" "this" {
  project_id = local.project
}
