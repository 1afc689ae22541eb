"""Fetch a JWT-SVID from a SPIFFE Workload API with py-spiffe, verify it, and print the result.

Usage: fetch_jwt.py ENDPOINT AUDIENCE

ENDPOINT is `unix:/path/to/api.sock`. The script fetches a JWT-SVID for AUDIENCE, verifies it
locally against the JWT bundle of its trust domain from FetchJWTBundles, and has the agent
validate it with ValidateJWTSVID. On success it prints one JSON object with the SPIFFE ID, the
audience, the expiry (Unix seconds), the SPIFFE IDs the local check and the agent found, and
the trust domains of the JWT bundles, then exits 0. On failure it prints {"error": MESSAGE}
and exits 1.
"""

import json
import sys

from spiffe import JwtSvid, WorkloadApiClient

# Seconds to wait for each Workload API call before giving up.
TIMEOUT_SECONDS = 20


def fetch_and_check(client, audience):
    svid = client.fetch_jwt_svid(audience={audience}, timeout=TIMEOUT_SECONDS)
    bundles = client.fetch_jwt_bundles(timeout=TIMEOUT_SECONDS)
    bundle = bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
    if bundle is None:
        raise RuntimeError(f"no JWT bundle for {svid.spiffe_id.trust_domain}")
    verified = JwtSvid.parse_and_validate(svid.token, bundle, {audience})
    validated = client.validate_jwt_svid(svid.token, audience, timeout=TIMEOUT_SECONDS)
    return {
        "spiffe_id": str(svid.spiffe_id),
        "audience": sorted(svid.audience),
        "expiry": int(svid.expiry),
        "verified_spiffe_id": str(verified.spiffe_id),
        "validated_spiffe_id": str(validated.spiffe_id),
        "bundle_trust_domains": sorted(
            str(bundle.trust_domain) for bundle in bundles.bundles
        ),
    }


def main():
    endpoint, audience = sys.argv[1], sys.argv[2]
    try:
        with WorkloadApiClient(endpoint) as client:
            result = fetch_and_check(client, audience)
    except Exception as error:  # Every failure is reported to the test as JSON.
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
