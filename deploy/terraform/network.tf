# VPC for private traffic: Cloud Run reaches Cloud SQL and Memorystore through Direct VPC egress
# (the run.googleapis.com/network-interfaces annotation in the rendered manifests, no connector).

locals {
  apis = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
    "sts.googleapis.com",
  ]
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  service            = each.value
  disable_on_destroy = false
}

resource "google_compute_network" "vpc" {
  name                    = local.cfg.network.vpc
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
  depends_on              = [google_project_service.apis]
}

# Direct VPC egress takes instance IPs from this subnet (2 per instance during scale-up).
resource "google_compute_subnetwork" "run" {
  name                     = local.cfg.network.subnet
  region                   = local.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = local.cfg.network.subnet_cidr
  private_ip_google_access = true
}

# Private services access: the peering range Cloud SQL (private IP) and Memorystore live in.
resource "google_compute_global_address" "private_services" {
  name          = "${local.cfg.network.vpc}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.vpc.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}
