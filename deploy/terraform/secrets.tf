# The dashboard session secret: HMAC key of the dashboard's session cookies
# (GUARDRAIL_DASHBOARD_SESSION_SECRET in the management service). Generated here, stored only in
# Secret Manager (and, marked sensitive, in the Terraform state), readable only by the management
# service account (iam.tf, secret_readers). Without one shared key every instance would draw its
# own and sessions would break across instances, restarts and deploys.
#
# Rotate: `terraform apply -replace=random_password.dashboard_session`, then redeploy the
# management service so every instance reads the new `latest` version. All dashboard sessions end
# (people sign in again); API keys and the admin token are unaffected.

resource "random_password" "dashboard_session" {
  length  = 64    # 64 × [A-Za-z0-9] ≈ 381 bits; the service needs >= 32 characters
  special = false # safe in any env var or header without quoting
}

resource "google_secret_manager_secret_version" "dashboard_session" {
  secret      = google_secret_manager_secret.secret["dashboard_session"].id
  secret_data = random_password.dashboard_session.result
}
