"""Fetch the X.509 context from a SPIFFE Workload API with py-spiffe and print it as JSON.

Usage: fetch_x509.py ENDPOINT

ENDPOINT is `unix:/path/to/api.sock`. On success the script prints one JSON object with the
default SVID's SPIFFE ID, its expiry (Unix seconds), its chain length, the SPIFFE IDs of all
SVIDs and the trust domains of the bundles, then exits 0. On failure it prints
{"error": MESSAGE} and exits 1.
"""

import json
import sys

from spiffe import WorkloadApiClient

# Seconds to wait for the Workload API before giving up.
TIMEOUT_SECONDS = 20


def describe(context):
    default = context.default_svid
    return {
        "spiffe_id": str(default.spiffe_id),
        "expiry": int(default.leaf.not_valid_after_utc.timestamp()),
        "chain_length": len(default.cert_chain),
        "spiffe_ids": [str(svid.spiffe_id) for svid in context.x509_svids],
        "bundle_trust_domains": sorted(
            str(bundle.trust_domain) for bundle in context.x509_bundle_set.bundles
        ),
    }


def main():
    endpoint = sys.argv[1]
    try:
        with WorkloadApiClient(endpoint) as client:
            context = client.fetch_x509_context(timeout=TIMEOUT_SECONDS)
    except Exception as error:  # Every failure is reported to the test as JSON.
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps(describe(context)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
