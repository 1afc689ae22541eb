"""Have a SPIFFE Workload API validate JWT-SVIDs with py-spiffe and print how each call ended.

Usage: validate_jwt.py ENDPOINT AUDIENCE TOKENS_FILE

ENDPOINT is `unix:/path/to/api.sock`. TOKENS_FILE contains one JSON object that maps a case name to
a token. The script calls ValidateJWTSVID for AUDIENCE with each token and prints one JSON
object that maps each case name to {"code": GRPC_CODE, "details": MESSAGE}, where GRPC_CODE is
"OK" when the agent accepted the token and "NONE" when the failure carried no gRPC status. It
exits 0 once every case has run, and prints {"error": MESSAGE} and exits 1 when it cannot run.
"""

import json
import sys

import grpc
from spiffe import WorkloadApiClient

# Seconds to wait for each Workload API call before giving up.
TIMEOUT_SECONDS = 20


def grpc_status(error):
    """Returns the code name and details of the gRPC call that caused `error`, if any."""
    cause = error
    while cause is not None:
        if isinstance(cause, grpc.Call):
            return cause.code().name, cause.details()
        cause = cause.__cause__
    return "NONE", str(error)


def validate(client, audience, token):
    try:
        client.validate_jwt_svid(token, audience, timeout=TIMEOUT_SECONDS)
    except Exception as error:  # Each failure is the result the test checks.
        code, details = grpc_status(error)
        return {"code": code, "details": details}
    return {"code": "OK", "details": ""}


def main():
    endpoint, audience, tokens_file = sys.argv[1], sys.argv[2], sys.argv[3]
    try:
        with open(tokens_file, encoding="utf-8") as file:
            tokens = json.load(file)
        with WorkloadApiClient(endpoint) as client:
            results = {
                name: validate(client, audience, token)
                for name, token in tokens.items()
            }
    except Exception as error:  # Every failure is reported to the test as JSON.
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
