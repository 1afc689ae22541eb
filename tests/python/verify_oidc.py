"""Act as an OIDC relying party against signet-oidc, with PyJWT, and print the outcome as JSON.

Usage:
  verify_oidc.py fetch URL [--host HOST] [--cafile PEM]
  verify_oidc.py verify DISCOVERY_URL TOKEN_FILE AUDIENCE ISSUER [--cafile PEM] [--raw-key]

`fetch` sends one GET and prints {"status", "content_type", "cache_control", "body"}, where body
is the parsed JSON or else the text. `--host` overrides the Host header.

`verify` reads the discovery document and checks that its issuer is ISSUER. It follows the
jwks_uri with PyJWKClient and picks the key by the kid of the token in TOKEN_FILE. The token
comes from a file so that it never appears in a process list. PyJWT then decodes the token,
requiring AUDIENCE and ISSUER, and the script prints {"issuer", "jwks_uri", "kid", "alg",
"header_alg", "claims"}: alg is the PyJWK's algorithm and header_alg the token's.

PyJWT rejects a token whose alg differs from the PyJWK's algorithm. That algorithm comes from
the JWK's alg, or else from the key type, which gives RS256 for every RSA key. With --raw-key,
decode gets the bare public key instead, so the token's alg is checked against ALGORITHMS only.

With --cafile, TLS servers are verified against that PEM file only. Any failure prints
{"error": MESSAGE} and exits 1.
"""

import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request

import jwt

# Seconds allowed for each HTTP request.
TIMEOUT_SECONDS = 10

# Signature algorithms a relying party should accept from a SPIFFE issuer: never "none" or HMAC.
ALGORITHMS = ["ES256", "ES384", "PS256", "RS256"]


def ssl_context(cafile):
    if cafile is None:
        return None
    return ssl.create_default_context(cafile=cafile)


def http_get(url, context, host=None):
    request = urllib.request.Request(url)
    if host is not None:
        request.add_unredirected_header("Host", host)
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        return response.status, response.headers, response.read().decode("utf-8")


def fetch(args):
    status, headers, text = http_get(args.url, ssl_context(args.cafile), args.host)
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    return {
        "status": status,
        "content_type": headers.get("Content-Type"),
        "cache_control": headers.get("Cache-Control"),
        "body": body,
    }


def verify(args):
    context = ssl_context(args.cafile)
    status, _, text = http_get(args.discovery_url, context)
    if status != 200:
        raise RuntimeError(f"discovery document returned HTTP {status}: {text}")
    document = json.loads(text)
    if document["issuer"] != args.issuer:
        raise RuntimeError(f"discovery issuer {document['issuer']!r} is not {args.issuer!r}")

    with open(args.token_file, encoding="ascii") as file:
        token = file.read().strip()
    client = jwt.PyJWKClient(document["jwks_uri"], cache_keys=False, ssl_context=context)
    signing_key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key if args.raw_key else signing_key,
        algorithms=ALGORITHMS,
        audience=args.audience,
        issuer=args.issuer,
        options={"require": ["sub", "aud", "exp", "iss"]},
    )
    return {
        "issuer": document["issuer"],
        "jwks_uri": document["jwks_uri"],
        "kid": signing_key.key_id,
        "alg": signing_key.algorithm_name,
        "header_alg": jwt.get_unverified_header(token)["alg"],
        "claims": claims,
    }


def parse_args():
    parser = argparse.ArgumentParser(description="OIDC relying party checks with PyJWT")
    commands = parser.add_subparsers(dest="command", required=True)

    fetch_parser = commands.add_parser("fetch")
    fetch_parser.add_argument("url")
    fetch_parser.add_argument("--host")
    fetch_parser.add_argument("--cafile")
    fetch_parser.set_defaults(handler=fetch)

    verify_parser = commands.add_parser("verify")
    verify_parser.add_argument("discovery_url")
    verify_parser.add_argument("token_file")
    verify_parser.add_argument("audience")
    verify_parser.add_argument("issuer")
    verify_parser.add_argument("--cafile")
    verify_parser.add_argument("--raw-key", action="store_true")
    verify_parser.set_defaults(handler=verify)
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        result = args.handler(args)
    except Exception as error:  # Every failure is reported to the test as JSON.
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
