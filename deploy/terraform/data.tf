# Cloud SQL for PostgreSQL (private IP only, IAM database authentication) and Memorystore for
# Redis (in the VPC, AUTH + TLS). No database password exists: each service account is its own
# Cloud SQL IAM user.

resource "google_sql_database_instance" "main" {
  name                = local.cfg.database.instance
  region              = local.region
  database_version    = local.cfg.database.version
  deletion_protection = var.deletion_protection

  settings {
    tier              = local.cfg.database.tier
    edition           = "ENTERPRISE"
    availability_type = "REGIONAL"
    disk_autoresize   = true

    ip_configuration {
      ipv4_enabled                                  = false
      private_network                               = google_compute_network.vpc.id
      ssl_mode                                      = "ENCRYPTED_ONLY"
      enable_private_path_for_google_cloud_services = true
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }

    insights_config {
      query_insights_enabled = true
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "guardrail" {
  name     = local.cfg.database.name
  instance = google_sql_database_instance.main.name
}

# One IAM database user per runtime service account (name = email without .gserviceaccount.com).
# Table privileges are granted once in SQL (docs/deploy.md, "First deploy").
resource "google_sql_user" "runtime" {
  for_each = toset(local.runtime_roles)
  name     = trimsuffix(google_service_account.runtime[each.key].email, ".gserviceaccount.com")
  instance = google_sql_database_instance.main.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

resource "google_redis_instance" "cache" {
  name                    = local.cfg.redis.instance
  region                  = local.region
  tier                    = var.redis_tier
  memory_size_gb          = local.cfg.redis.memory_gb
  redis_version           = "REDIS_7_2"
  authorized_network      = google_compute_network.vpc.id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  depends_on = [google_service_networking_connection.private_services]
}

# GUARDRAIL_REDIS_URL for the services: TLS (rediss), AUTH, and the server CA mounted from the
# redis-ca secret volume (redis-py passes ssl_ca_certs from the URL to the connection).
resource "google_secret_manager_secret_version" "redis_url" {
  secret      = google_secret_manager_secret.secret["redis_url"].id
  secret_data = "rediss://:${google_redis_instance.cache.auth_string}@${google_redis_instance.cache.host}:${google_redis_instance.cache.port}/0?ssl_ca_certs=${local.redis_ca_path}"
}

resource "google_secret_manager_secret_version" "redis_ca" {
  secret      = google_secret_manager_secret.secret["redis_ca"].id
  secret_data = google_redis_instance.cache.server_ca_certs[0].cert
}
