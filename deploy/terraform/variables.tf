# Almost everything comes from deploy/config.yaml (locals.tf). These are the switches that
# belong to a Terraform run rather than to the deployment.

variable "services_deployed" {
  description = "Set to true after the first `gcloud run services replace`: grants Pub/Sub push the invoker role on the (then existing) log-subscriber service."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Protect Cloud SQL from `terraform destroy`."
  type        = bool
  default     = true
}

variable "redis_tier" {
  description = "Memorystore tier: STANDARD_HA (replica, failover) or BASIC (cheaper, no replica)."
  type        = string
  default     = "STANDARD_HA"

  validation {
    condition     = contains(["STANDARD_HA", "BASIC"], var.redis_tier)
    error_message = "redis_tier must be STANDARD_HA or BASIC."
  }
}

variable "github_main_ref" {
  description = "The only Git ref allowed to deploy through Workload Identity Federation."
  type        = string
  default     = "refs/heads/main"
}
