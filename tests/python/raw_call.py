"""Call one Workload API method with grpcio directly and print the gRPC status as JSON.

Usage: raw_call.py ENDPOINT METHOD [--without-header]

METHOD is FetchX509SVID, FetchX509Bundles, FetchJWTSVID, FetchJWTBundles or ValidateJWTSVID.
The call uses the Workload API stub that py-spiffe generated, on a plain grpcio channel, and sends
the `workload.spiffe.io: true` metadata unless --without-header is given (py-spiffe's own client
always sends it). Prints {"code": NAME, "details": MESSAGE}, where NAME is the gRPC status code
name, or {"code": "OK"} when the call succeeded, and exits 0.
"""

import json
import sys

import grpc
from spiffe._proto import workload_pb2, workload_pb2_grpc

# Seconds to wait for the Workload API before giving up.
TIMEOUT_SECONDS = 20

# Method name, request, and whether the response is a stream.
REQUESTS = {
    "FetchX509SVID": (workload_pb2.X509SVIDRequest(), True),
    "FetchX509Bundles": (workload_pb2.X509BundlesRequest(), True),
    "FetchJWTSVID": (workload_pb2.JWTSVIDRequest(audience=["e2e"]), False),
    "FetchJWTBundles": (workload_pb2.JWTBundlesRequest(), True),
    "ValidateJWTSVID": (workload_pb2.ValidateJWTSVIDRequest(audience="e2e", svid="x.y.z"), False),
}


def call(stub, method, metadata):
    request, streaming = REQUESTS[method]
    rpc = getattr(stub, method)
    if not streaming:
        rpc(request, metadata=metadata, timeout=TIMEOUT_SECONDS)
        return
    responses = rpc(request, metadata=metadata, timeout=TIMEOUT_SECONDS)
    try:
        next(responses)
    except StopIteration:
        pass
    finally:
        responses.cancel()


def main():
    endpoint, method = sys.argv[1], sys.argv[2]
    metadata = [] if "--without-header" in sys.argv[3:] else [("workload.spiffe.io", "true")]
    with grpc.insecure_channel(endpoint) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        try:
            call(stub, method, metadata)
        except grpc.RpcError as error:
            print(json.dumps({"code": error.code().name, "details": error.details()}))
            return 0
    print(json.dumps({"code": "OK"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
