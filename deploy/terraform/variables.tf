variable "engine" {
  description = "The function: rds-postgres, redshift or documentdb."
  type        = string
  validation {
    condition     = contains(["rds-postgres", "redshift", "documentdb"], var.engine)
    error_message = "engine must be rds-postgres, redshift or documentdb."
  }
}

variable "strategy" {
  description = "single-user or alternating-users."
  type        = string
  default     = "single-user"
  validation {
    condition     = contains(["single-user", "alternating-users"], var.strategy)
    error_message = "strategy must be single-user or alternating-users."
  }
}

variable "function_name" {
  description = "The function's name (the role's conditions name it)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.function_name))
    error_message = "function_name must be 1-64 letters, digits, - or _."
  }
}

variable "zip_path" {
  description = "The engine's bootstrap zip (scripts/package: target/lambda-zips/ENGINE/bootstrap.zip)."
  type        = string
}

variable "architecture" {
  description = "x86_64 or arm64 (the zip's)."
  type        = string
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "subnet_ids" {
  description = "Subnets that reach the database (empty: no VPC)."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the function (with subnet_ids)."
  type        = list(string)
  default     = []
}

variable "secrets_manager_endpoint" {
  description = "Secrets Manager endpoint URL (empty: the regional default)."
  type        = string
  default     = ""
}

variable "kms_key_arn" {
  description = "The secrets' customer managed KMS key (empty: the AWS managed key)."
  type        = string
  default     = ""
}

variable "master_secret_arn" {
  description = "Alternating users: the master secret's full ARN (-?????? in place of the random suffix also works)."
  type        = string
  default     = ""
}

variable "exclude_characters" {
  description = "EXCLUDE_CHARACTERS (empty: the engine's default)."
  type        = string
  default     = ""
}

variable "password_length" {
  description = "PASSWORD_LENGTH (empty: the engine's default)."
  type        = string
  default     = ""
}

variable "ca_bundle_path" {
  description = "CA_BUNDLE_PATH in the package or a layer (empty: the embedded RDS bundle and the system store)."
  type        = string
  default     = ""
}

variable "secret_arn" {
  description = "A secret to rotate with this function (empty: attach secrets later)."
  type        = string
  default     = ""
}

variable "attach_secret" {
  description = "Attach secret_arn's rotation schedule (a flag, so that secret_arn may be unknown until apply)."
  type        = bool
  default     = false
}

variable "schedule_expression" {
  description = "The secret's rotation schedule (with secret_arn)."
  type        = string
  default     = "rate(30 days)"
}

variable "rotate_immediately" {
  description = "Rotate the secret as soon as the schedule is attached (with secret_arn)."
  type        = bool
  default     = false
}
