# Providers and state. The state bucket is created once by hand (docs/deploy.md, "Bootstrap"):
#   terraform init -backend-config="bucket=<PROJECT>-tfstate"
# State holds the Memorystore AUTH string and the generated dashboard session secret (both are
# written into Secret Manager), so the state bucket must be readable only by the people and the
# pipeline that run Terraform.

terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.20, < 8.0"
    }
    # random_password for the dashboard session secret (secrets.tf).
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }

  backend "gcs" {
    prefix = "guardrail"
  }
}

provider "google" {
  project = local.project
  region  = local.region
}
