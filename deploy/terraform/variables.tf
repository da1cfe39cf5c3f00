variable "engine" {
  description = "The function: rds-postgres, redshift, documentdb or rds-mysql."
  type        = string
  validation {
    condition     = contains(["rds-postgres", "redshift", "documentdb", "rds-mysql"], var.engine)
    error_message = "The engine must be rds-postgres, redshift, documentdb or rds-mysql."
  }
}

variable "strategy" {
  description = "single-user or alternating-users."
  type        = string
  default     = "single-user"
  validation {
    condition     = contains(["single-user", "alternating-users"], var.strategy)
    error_message = "The strategy must be single-user or alternating-users."
  }
}

variable "function_name" {
  description = "The function's name (the role's conditions name it)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.function_name))
    error_message = "The function_name must be 1-64 letters, digits, - or _."
  }
}

variable "zip_path" {
  description = "The engine's bootstrap zip on this machine (scripts/package: target/lambda-zips/ENGINE/bootstrap.zip); or code_bucket and code_key."
  type        = string
  default     = null
}

variable "code_bucket" {
  description = "The S3 bucket of the engine's zip, with code_key (in place of zip_path)."
  type        = string
  default     = null
}

variable "code_key" {
  description = "The S3 key of the engine's zip, a new key per build (in place of zip_path)."
  type        = string
  default     = null
}

variable "architecture" {
  description = "x86_64 or arm64 (the zip's)."
  type        = string
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "The architecture must be x86_64 or arm64."
  }
}

variable "subnet_ids" {
  description = "Subnets that reach the database (empty: no VPC)."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the function (with subnet_ids; or vpc_id, which creates one)."
  type        = list(string)
  default     = []
}

variable "vpc_id" {
  description = "With subnet_ids, creates the function's own security group in this VPC (null: none); its egress is HTTPS anywhere (Secrets Manager's endpoint or a NAT) and the database's port."
  type        = string
  default     = null
}

variable "database_security_group_id" {
  description = "With vpc_id, the database's security group, which gets an ingress rule from the function's on the database's port (null: add the rule yourself, docs/deploy.md section 3)."
  type        = string
  default     = null
}

variable "database_port" {
  description = "The database's port for the created security group's rules (null: the engine's default)."
  type        = number
  default     = null
}

variable "secrets_manager_endpoint" {
  description = "Secrets Manager endpoint URL (empty: the regional default)."
  type        = string
  default     = ""
}

variable "kms_key_arns" {
  description = "The customer managed KMS keys of the rotated and master secrets (empty: the AWS managed key)."
  type        = list(string)
  default     = []
}

variable "master_secret_arns" {
  description = "Alternating users: the master secrets' full ARNs (-?????? in place of the random suffix also works). The role reads only these and the function refuses any other."
  type        = list(string)
  default     = []
}

variable "invoke_source_arn" {
  description = "The secrets that may have Secrets Manager invoke the function, as an ARN pattern (empty: secret_arn when given, else any secret of this account)."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^$|^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.invoke_source_arn))
    error_message = "The invoke_source_arn must be a secret ARN pattern (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME*)."
  }
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

variable "exclude_numbers" {
  description = "EXCLUDE_NUMBERS: \"\", \"true\" or \"false\" (empty: the engine's default; Redshift ignores it)."
  type        = string
  default     = ""
  validation {
    condition     = contains(["", "true", "false"], var.exclude_numbers)
    error_message = "The exclude_numbers must be empty, true or false."
  }
}

variable "exclude_punctuation" {
  description = "EXCLUDE_PUNCTUATION: \"\", \"true\" or \"false\" (empty: the engine's default)."
  type        = string
  default     = ""
  validation {
    condition     = contains(["", "true", "false"], var.exclude_punctuation)
    error_message = "The exclude_punctuation must be empty, true or false."
  }
}

variable "exclude_uppercase" {
  description = "EXCLUDE_UPPERCASE: \"\", \"true\" or \"false\" (empty: the engine's default; Redshift ignores it)."
  type        = string
  default     = ""
  validation {
    condition     = contains(["", "true", "false"], var.exclude_uppercase)
    error_message = "The exclude_uppercase must be empty, true or false."
  }
}

variable "exclude_lowercase" {
  description = "EXCLUDE_LOWERCASE: \"\", \"true\" or \"false\" (empty: the engine's default; Redshift ignores it)."
  type        = string
  default     = ""
  validation {
    condition     = contains(["", "true", "false"], var.exclude_lowercase)
    error_message = "The exclude_lowercase must be empty, true or false."
  }
}

variable "require_each_included_type" {
  description = "REQUIRE_EACH_INCLUDED_TYPE: \"\", \"true\" or \"false\" (empty: true)."
  type        = string
  default     = ""
  validation {
    condition     = contains(["", "true", "false"], var.require_each_included_type)
    error_message = "The require_each_included_type must be empty, true or false."
  }
}

variable "allow_plaintext_fallback" {
  description = "ALLOW_PLAINTEXT_FALLBACK: AWS's retry without TLS when TLS fails, for secrets without an ssl key (off: TLS is verified and never silently dropped)."
  type        = bool
  default     = false
}

variable "connect_timeout_seconds" {
  description = "CONNECT_TIMEOUT_SECONDS per connection attempt, 1-300 (empty: 5)."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^[0-9]*$", var.connect_timeout_seconds))
    error_message = "The connect_timeout_seconds must be a number of seconds."
  }
}

variable "log_retention_days" {
  description = "How long the function's log group keeps its logs."
  type        = number
  default     = 90
}

variable "memory_size" {
  description = "The function's memory in MiB (128 is enough: a rotation peaks near 12 MiB)."
  type        = number
  default     = 128
}

variable "timeout" {
  description = "The function's timeout in seconds; each step ends 3 s before it."
  type        = number
  default     = 60
}

variable "permissions_boundary" {
  description = "The ARN of a permissions boundary policy for the function's role (null: none)."
  type        = string
  default     = null
}

variable "role_path" {
  description = "The path of the function's role."
  type        = string
  default     = "/"
}

variable "tags" {
  description = "Tags for the function, its role and its log group."
  type        = map(string)
  default     = {}
}

variable "alarm_topic_arn" {
  description = "An SNS topic an alarm tells when a rotation step fails (the function's RotationFailed metric, or Lambda's Errors or Throttles; the log line has the errorType). Null: no alarm. A topic encrypted with a customer key needs a key policy for cloudwatch.amazonaws.com."
  type        = string
  default     = null
}

variable "ca_bundle_path" {
  description = "CA_BUNDLE_PATH, a PEM file in one of the layers (/opt/...) (empty: the embedded RDS bundle and the system store)."
  type        = string
  default     = ""
}

variable "secret_arn" {
  description = "A secret to rotate with this function, its full ARN with the random suffix (empty: attach secrets later)."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^$|^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$", var.secret_arn))
    error_message = "The secret_arn must be the secret's full ARN, with the six-character suffix Secrets Manager adds."
  }
}

variable "layers" {
  description = "Lambda layer version ARNs, for example one holding ca_bundle_path's PEM file under /opt."
  type        = list(string)
  default     = []
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

variable "username_character_limit" {
  description = "USERNAME_CHARACTER_LIMIT (rds-mysql): the longest clone name of mysql and aurora-mysql secrets, 1-255 (empty: 16)."
  type        = string
  default     = ""
  validation {
    condition     = can(regex("^[0-9]*$", var.username_character_limit))
    error_message = "The username_character_limit must be a number of characters."
  }
}

variable "code_signing_config_arn" {
  description = "A Lambda code-signing configuration the function's code must satisfy (null: none; the account's policy)."
  type        = string
  default     = null
}
