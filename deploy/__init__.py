"""Google Cloud deployment: config, manifest renderer, Terraform, build configs."""
