# Judgement events: judge-api publishes to the topic; a push subscription delivers each event to
# the log-subscriber service with an OIDC token; after max_delivery_attempts a message goes to
# the dead-letter topic, where a pull subscription keeps it for inspection and replay.

resource "google_pubsub_topic" "judgements" {
  name                       = local.cfg.pubsub.topic
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  name                       = local.cfg.pubsub.dead_letter_topic
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.apis]
}

resource "google_pubsub_subscription" "push" {
  name                       = local.cfg.pubsub.subscription
  topic                      = google_pubsub_topic.judgements.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${local.subscriber_url}${local.cfg.pubsub.push_path}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = local.cfg.pubsub.push_audience
    }
  }

  # Non-2xx answers (and timeouts) are redelivered with exponential backoff between these bounds.
  retry_policy {
    minimum_backoff = "${local.cfg.pubsub.min_backoff_seconds}s"
    maximum_backoff = "${local.cfg.pubsub.max_backoff_seconds}s"
  }

  # The same number is rendered into the subscriber (GUARDRAIL_PUBSUB_MAX_DELIVERY_ATTEMPTS).
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = local.cfg.pubsub.max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

# A topic without a subscription drops its messages: keep dead letters for 7 days.
resource "google_pubsub_subscription" "dead_letter" {
  name                       = "${local.cfg.pubsub.dead_letter_topic}-hold"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
  ack_deadline_seconds       = 60

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering is done by the Pub/Sub service agent: it must publish to the dead-letter topic
# and acknowledge on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  subscription = google_pubsub_subscription.push.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# The service agent mints the push OIDC tokens for the push identity.
resource "google_service_account_iam_member" "push_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# Only the push identity may invoke the log subscriber. The service is created by the first
# deploy (`gcloud run services replace`), so this binding waits for `-var services_deployed=true`.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  count    = var.services_deployed ? 1 : 0
  project  = local.project
  location = local.region
  name     = local.cfg.services.subscriber.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"
}

# judge-api publishes judgement events; nothing else does.
resource "google_pubsub_topic_iam_member" "judge_publisher" {
  topic  = google_pubsub_topic.judgements.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.runtime["judge"].email}"
}
