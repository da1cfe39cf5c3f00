"""moto's server for the rotation tests.

- Lambda runs without Docker: moto's simple Lambda backend is selected.
- When LAMBDA_FORWARD_URL is set, a Lambda invocation (e.g. from RotateSecret) is POSTed to
  LAMBDA_FORWARD_URL/2015-03-31/functions/<name>/invocations, which the testkit's
  LambdaService serves,
  so moto's RotateSecret runs our real function. A function error becomes an
  InvalidRequestException of RotateSecret, as a failed rotation does on AWS.
- PutSecretValue refuses a value for a version that already holds a different one
  (ResourceExistsException), as Secrets Manager does; moto lets a put overwrite a version at
  AWSPENDING, which no real rotation race can do.
- When the process that started it (the test) dies, the server exits too.

Usage: moto_server.py -H 127.0.0.1 -p PORT
"""
import os
import sys
import threading
import time
import urllib.error
import urllib.request

from moto.core.config import default_user_config

default_user_config["lambda"]["use_docker"] = False

forward = os.environ.get("LAMBDA_FORWARD_URL")
if forward:
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def _invoke(self, function_name, qualifier, body, headers, response_headers):
        name = function_name.split(":function:")[-1].split(":")[0]
        url = f"{forward}/2015-03-31/functions/{name}/invocations"
        request = urllib.request.Request(url, data=(body or "{}").encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=900) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            from moto.secretsmanager.exceptions import InvalidRequestException

            detail = err.read().decode(errors="replace")[:2000]
            raise InvalidRequestException(f"Lambda {name} failed: {detail}")

    LambdaSimpleBackend.invoke = _invoke


from moto.secretsmanager.exceptions import ResourceExistsException  # noqa: E402
from moto.secretsmanager.models import SecretsManagerBackend  # noqa: E402

_check_versions = SecretsManagerBackend._check_with_existing_secrets_and_versions


def _check_versions_as_aws(self, secret_name, client_request_token, secret_string, secret_binary, *args, **kwargs):
    if client_request_token and secret_name in self.secrets.keys():
        secret = self.secrets[secret_name]
        version = getattr(secret, "versions", {}).get(client_request_token)
        held = version and (version.get("secret_string"), version.get("secret_binary"))
        if held and held != (None, None) and held != (secret_string, secret_binary):
            raise ResourceExistsException(
                f"You can't use ClientRequestToken {client_request_token} because that value is "
                f"already in use for a version of secret {secret.arn}."
            )
    return _check_versions(self, secret_name, client_request_token, secret_string, secret_binary, *args, **kwargs)


SecretsManagerBackend._check_with_existing_secrets_and_versions = _check_versions_as_aws


def _exit_with_parent():
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


threading.Thread(target=_exit_with_parent, daemon=True).start()

from moto.server import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
