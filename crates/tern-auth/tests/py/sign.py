#!/usr/bin/env python3
"""An independent signer for Tern's cross-implementation tests.

Standard library only (hmac, hashlib, base64, json). Written from the rules
in PRODUCT.md section 3 and ABLY-PROTOCOL.md section 5.10, not from the Rust
code, so that the two can disagree.

  sign.py token-request --key APPID.KEYID:SECRET --timestamp MS --nonce N
                        [--ttl MS] [--capability JSON] [--client-id ID]
      Prints a signed TokenRequest as JSON. The capability is put in
      canonical form first (as ably-js does): no whitespace, resources
      sorted, operations sorted and de-duplicated. Absent and empty fields
      are left out of the JSON and are empty in the mac text.

  sign.py jwt --key APPID.KEYID:SECRET --iat S --exp S --capability JSON
              [--client-id ID] [--alg ALG]
      Prints an Ably JWT: header {alg, typ, kid}, claims iat, exp,
      x-ably-capability (the JSON text as given) and x-ably-clientId, signed
      with HMAC-SHA-256 under the key secret (whatever --alg says).
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys


def split_key(key):
    name, sep, secret = key.partition(":")
    if not sep or not secret or "." not in name:
        sys.exit("key must be appId.keyId:secret")
    return name, secret


def canonical_capability(text):
    parsed = json.loads(text)
    canonical = {resource: sorted(set(ops)) for resource, ops in parsed.items()}
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def token_request(args):
    key_name, secret = split_key(args.key)
    capability = canonical_capability(args.capability) if args.capability else ""
    client_id = args.client_id or ""
    ttl = "" if args.ttl is None else str(args.ttl)
    text = "".join(
        field + "\n"
        for field in (key_name, ttl, capability, client_id, str(args.timestamp), args.nonce)
    )
    mac = base64.b64encode(
        hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).digest()
    ).decode("ascii")
    request = {"keyName": key_name}
    if args.ttl is not None:
        request["ttl"] = args.ttl
    if capability:
        request["capability"] = capability
    if client_id:
        request["clientId"] = client_id
    request["timestamp"] = args.timestamp
    request["nonce"] = args.nonce
    request["mac"] = mac
    print(json.dumps(request, ensure_ascii=False))


def jwt(args):
    key_name, secret = split_key(args.key)
    header = {"alg": args.alg, "typ": "JWT", "kid": key_name}
    claims = {"iat": args.iat, "exp": args.exp, "x-ably-capability": args.capability}
    if args.client_id:
        claims["x-ably-clientId"] = args.client_id
    signing_input = (
        b64url(json.dumps(header).encode("utf-8"))
        + "."
        + b64url(json.dumps(claims).encode("utf-8"))
    )
    signature = hmac.new(
        secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256
    ).digest()
    print(signing_input + "." + b64url(signature))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    tr = commands.add_parser("token-request")
    tr.add_argument("--key", required=True)
    tr.add_argument("--timestamp", type=int, required=True)
    tr.add_argument("--nonce", required=True)
    tr.add_argument("--ttl", type=int)
    tr.add_argument("--capability")
    tr.add_argument("--client-id")
    tr.set_defaults(run=token_request)

    jw = commands.add_parser("jwt")
    jw.add_argument("--key", required=True)
    jw.add_argument("--iat", type=int, required=True)
    jw.add_argument("--exp", type=int, required=True)
    jw.add_argument("--capability", required=True)
    jw.add_argument("--client-id")
    jw.add_argument("--alg", default="HS256")
    jw.set_defaults(run=jwt)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
