# A Secrets Manager rotation function of this project, its least-privilege role, the permission
# that lets only Secrets Manager of this account invoke it, and optionally one secret's
# schedule. The same inputs, IAM and outputs as deploy/sam/template.yaml.

terraform {
  # Preconditions need 1.2.
  required_version = ">= 1.2"
  required_providers {
    aws = {
      # 5.x from 5.100 and 6.x (rotate_immediately of the rotation needs 5.37). The region is
      # read from the log group's ARN: data.aws_region's `name` is deprecated in 6.0 and its
      # `region` exists only from 6.0. Not validated here: the provider cannot be downloaded on
      # the machines that build this repository.
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }
}

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  # The region, from an ARN of this module (data.aws_region has no attribute for it that both
  # 5.x and 6.x offer undeprecated).
  region               = split(":", aws_cloudwatch_log_group.rotation.arn)[3]
  makes_security_group = length(var.subnet_ids) > 0 && var.vpc_id != null
  database_port = coalesce(var.database_port, lookup({
    "rds-postgres" = 5432, "redshift" = 5439, "documentdb" = 27017, "rds-mysql" = 3306
  }, var.engine))
  alternating  = var.strategy == "alternating-users"
  function_arn = "arn:${data.aws_partition.current.partition}:lambda:${local.region}:${data.aws_caller_identity.current.account_id}:function:${var.function_name}"
  environment = { for k, v in {
    ROTATION_ENGINE            = var.engine
    ROTATION_STRATEGY          = var.strategy
    SECRETS_MANAGER_ENDPOINT   = var.secrets_manager_endpoint
    ALLOWED_MASTER_SECRETS     = local.alternating ? join(",", var.master_secret_arns) : ""
    EXCLUDE_CHARACTERS         = var.exclude_characters
    PASSWORD_LENGTH            = var.password_length
    EXCLUDE_NUMBERS            = var.exclude_numbers
    EXCLUDE_PUNCTUATION        = var.exclude_punctuation
    EXCLUDE_UPPERCASE          = var.exclude_uppercase
    EXCLUDE_LOWERCASE          = var.exclude_lowercase
    REQUIRE_EACH_INCLUDED_TYPE = var.require_each_included_type
    ALLOW_PLAINTEXT_FALLBACK   = var.allow_plaintext_fallback ? "true" : ""
    CONNECT_TIMEOUT_SECONDS    = var.connect_timeout_seconds
    USERNAME_CHARACTER_LIMIT   = var.username_character_limit
    CA_BUNDLE_PATH             = var.ca_bundle_path
  } : k => v if v != "" }
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "rotation" {
  # The log group is created below with its retention, so the role cannot create one (which
  # would keep logs forever).
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.rotation.arn}:*"]
  }

  statement {
    sid = "RotatedSecrets"
    actions = [
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetSecretValue",
      "secretsmanager:PutSecretValue",
      "secretsmanager:UpdateSecretVersionStage",
      "secretsmanager:ListSecretVersionIds",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "secretsmanager:resource/AllowRotationLambdaArn"
      values   = [local.function_arn]
    }
  }

  statement {
    sid       = "RandomPassword"
    actions   = ["secretsmanager:GetRandomPassword"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = local.alternating ? [1] : []
    content {
      sid       = "MasterSecret"
      actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
      resources = var.master_secret_arns
    }
  }

  dynamic "statement" {
    for_each = local.alternating && contains(["rds-postgres", "rds-mysql"], var.engine) ? [1] : []
    content {
      sid       = "RdsManagedMasterAndReplicas"
      actions   = ["rds:DescribeDBInstances", "rds:DescribeDBClusters"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.alternating && var.engine == "redshift" ? [1] : []
    content {
      sid = "RedshiftManagedAdmin"
      actions = [
        "redshift:DescribeClusters",
        "redshift-serverless:ListNamespaces",
        "redshift-serverless:ListWorkgroups",
      ]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = length(var.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "SecretsKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = var.kms_key_arns
      # Only through Secrets Manager (it calls KMS with the function's credentials).
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.${data.aws_partition.current.dns_suffix}"]
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.subnet_ids) > 0 ? [1] : []
    content {
      sid = "VpcNetworkInterfaces"
      actions = [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
      ]
      resources = ["*"]
    }
  }
}

resource "aws_cloudwatch_log_group" "rotation" {
  # checkov:skip=CKV_AWS_158:The function logs names, kinds and ARNs, never a secret value (tested); a customer key adds cost, not confidentiality.
  # checkov:skip=CKV_AWS_338:How long to keep the rotation history is the operator's choice (log_retention_days).
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  # The rotation history outlives the module, as with the SAM template's Retain.
  skip_destroy = true
  tags         = var.tags
}

resource "aws_iam_role" "rotation" {
  name_prefix          = "${substr(var.function_name, 0, 32)}-"
  path                 = var.role_path
  permissions_boundary = var.permissions_boundary
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  tags                 = var.tags
}

resource "aws_iam_role_policy" "rotation" {
  name   = "rotation"
  role   = aws_iam_role.rotation.id
  policy = data.aws_iam_policy_document.rotation.json
}

resource "aws_lambda_function" "rotation" {
  # checkov:skip=CKV_AWS_116:Secrets Manager invokes the function synchronously; a dead-letter queue serves only asynchronous invocations.
  # checkov:skip=CKV_AWS_115:Rotations of many secrets may run at once (a fleet, a schedule); a reserved limit would throttle them into failed steps.
  # checkov:skip=CKV_AWS_272:Code signing is the account's policy: code_signing_config_arn takes one, off by default.
  # checkov:skip=CKV_AWS_173:The environment holds settings and ARNs, never a secret value; Lambda encrypts it at rest with its own key.
  # checkov:skip=CKV_AWS_50:Tracing adds nothing the JSON logs and the embedded metrics do not give.
  lifecycle {
    precondition {
      condition     = (var.zip_path != null) != (var.code_bucket != null && var.code_key != null)
      error_message = "Give the engine's zip as zip_path, or as code_bucket and code_key: one of the two."
    }
  }

  function_name           = var.function_name
  description             = "Secrets Manager rotation (${var.engine}, ${var.strategy})"
  filename                = var.zip_path
  source_code_hash        = var.zip_path == null ? null : filebase64sha256(var.zip_path)
  s3_bucket               = var.zip_path == null ? var.code_bucket : null
  s3_key                  = var.zip_path == null ? var.code_key : null
  runtime                 = "provided.al2023"
  code_signing_config_arn = var.code_signing_config_arn
  handler                 = "bootstrap"
  architectures           = [var.architecture]
  memory_size             = var.memory_size
  timeout                 = var.timeout
  role                    = aws_iam_role.rotation.arn
  layers                  = var.layers
  tags                    = var.tags

  dynamic "vpc_config" {
    for_each = length(var.subnet_ids) > 0 ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = concat(var.security_group_ids, aws_security_group.function[*].id)
    }
  }

  environment {
    variables = local.environment
  }

  depends_on = [aws_iam_role_policy.rotation, aws_cloudwatch_log_group.rotation]

  lifecycle {
    precondition {
      condition     = !local.alternating || length(var.master_secret_arns) > 0
      error_message = "Alternating users need master_secret_arns."
    }
    precondition {
      condition     = length(var.subnet_ids) == 0 || length(var.security_group_ids) > 0 || var.vpc_id != null
      error_message = "The subnet_ids need security_group_ids, or vpc_id to create the function's own."
    }
    precondition {
      condition     = var.database_security_group_id == null || local.makes_security_group
      error_message = "The database_security_group_id needs vpc_id and subnet_ids (the rule's source is the security group the module creates)."
    }
    precondition {
      condition     = !var.attach_secret || var.secret_arn != ""
      error_message = "The attach_secret needs secret_arn."
    }
  }
}

# Optional (vpc_id): the function's own security group. Egress: HTTPS anywhere (Secrets
# Manager's interface endpoint, or the internet through a NAT; RDS's API for alternating users)
# and the database's port, to the database's security group when given. DNS to the VPC's
# resolver is not filtered by security groups.
resource "aws_security_group" "function" {
  # checkov:skip=CKV2_AWS_5:Attached to the function through vpc_config (concat with its splat), which the check does not follow.
  count       = local.makes_security_group ? 1 : 0
  name_prefix = "${substr(var.function_name, 0, 32)}-"
  description = "Secrets Manager rotation function ${var.function_name}"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  count             = local.makes_security_group ? 1 : 0
  security_group_id = aws_security_group.function[0].id
  description       = "Secrets Manager (its endpoint or a NAT), and RDS's API"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "database" {
  count                        = local.makes_security_group ? 1 : 0
  security_group_id            = aws_security_group.function[0].id
  description                  = "The database"
  ip_protocol                  = "tcp"
  from_port                    = local.database_port
  to_port                      = local.database_port
  referenced_security_group_id = var.database_security_group_id
  cidr_ipv4                    = var.database_security_group_id == null ? "0.0.0.0/0" : null
}

# Optional (database_security_group_id): the database admits the function on its port.
resource "aws_vpc_security_group_ingress_rule" "database" {
  count                        = local.makes_security_group && var.database_security_group_id != null ? 1 : 0
  security_group_id            = var.database_security_group_id
  description                  = "Secrets Manager rotation function ${var.function_name}"
  ip_protocol                  = "tcp"
  from_port                    = local.database_port
  to_port                      = local.database_port
  referenced_security_group_id = aws_security_group.function[0].id
}

# Only Secrets Manager, on behalf of this account (and of the given secret), may invoke it.
resource "aws_lambda_permission" "secrets_manager" {
  function_name  = aws_lambda_function.rotation.function_name
  action         = "lambda:InvokeFunction"
  principal      = "secretsmanager.amazonaws.com"
  source_account = data.aws_caller_identity.current.account_id
  source_arn     = var.invoke_source_arn != "" ? var.invoke_source_arn : (var.secret_arn != "" ? var.secret_arn : null)
}

resource "aws_secretsmanager_secret_rotation" "schedule" {
  count               = var.attach_secret ? 1 : 0
  secret_id           = var.secret_arn
  rotation_lambda_arn = aws_lambda_function.rotation.arn
  rotate_immediately  = var.rotate_immediately
  rotation_rules {
    schedule_expression = var.schedule_expression
  }
  depends_on = [aws_lambda_permission.secrets_manager]
}

# One alarm per function, whatever its secrets: a step the function reports failed (its own
# RotationFailed metric, by FunctionName; the log line has the errorType), an invocation that
# ended without a report (Lambda's Errors: a timeout, a crash), or one Lambda throttled. A failed
# step counts in two; any count above zero alarms. (A call Secrets Manager could not make at
# all, such as a missing permission, shows in neither: its RotationFailed event in CloudTrail
# does.)
resource "aws_cloudwatch_metric_alarm" "failure" {
  count             = var.alarm_topic_arn == null ? 0 : 1
  alarm_name        = "${var.function_name}-rotation-failed"
  alarm_description = "A rotation step of ${var.function_name} failed: its log line has the errorType (docs/errors.md)"
  metric_query {
    id = "failed"
    metric {
      namespace   = "SecretsManagerRotation"
      metric_name = "RotationFailed"
      dimensions  = { FunctionName = aws_lambda_function.rotation.function_name }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Errors"
      dimensions  = { FunctionName = aws_lambda_function.rotation.function_name }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id = "throttles"
    metric {
      namespace   = "AWS/Lambda"
      metric_name = "Throttles"
      dimensions  = { FunctionName = aws_lambda_function.rotation.function_name }
      period      = 300
      stat        = "Sum"
    }
  }
  metric_query {
    id          = "failures"
    label       = "failed rotation steps, invocation errors and throttles"
    expression  = "FILL(failed, 0) + FILL(errors, 0) + FILL(throttles, 0)"
    return_data = true
  }
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  tags                = var.tags
}
