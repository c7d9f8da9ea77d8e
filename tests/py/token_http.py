"""A stdlib-only HTTP client for tests/token_http.rs (urllib, no third-party code).

    python3 token_http.py get  URL [--cafile CA.pem]
    python3 token_http.py post URL [--cafile CA.pem] [--basic NAME:SECRET]
                                   [--body TEXT | --body-bytes N]

Prints one JSON line: {"status": HTTP status, "content_type": ..., "body":
the body parsed as JSON, or {"raw": text} when it is not JSON}. 4xx/5xx
answers are printed the same way and exit 0; only a transport failure
(refused connection, TLS failure, timeout after TIMEOUT s) exits 2.

--body-bytes N sends N bytes of `x` (to test the body size limit).
"""

import argparse
import base64
import json
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT = 10


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", choices=["get", "post"])
    p.add_argument("url")
    p.add_argument("--cafile")
    p.add_argument("--basic")
    p.add_argument("--body")
    p.add_argument("--body-bytes", type=int)
    args = p.parse_args()

    data = None
    if args.method == "post":
        if args.body_bytes is not None:
            data = b"x" * args.body_bytes
        else:
            data = (args.body or "").encode("utf-8")
    req = urllib.request.Request(args.url, data=data, method=args.method.upper())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if args.basic:
        req.add_header(
            "Authorization", "Basic " + base64.b64encode(args.basic.encode("utf-8")).decode("ascii")
        )
    ctx = None
    if args.url.startswith("https:"):
        ctx = ssl.create_default_context(cafile=args.cafile)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT, context=ctx) as resp:
            status, ctype, raw = resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as e:
        status, ctype, raw = e.code, e.headers.get("Content-Type", ""), e.read()
    except Exception as e:  # connection refused, TLS failure, timeout
        print(f"transport failure: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = {"raw": text}
    print(json.dumps({"status": status, "content_type": ctype, "body": body}))


if __name__ == "__main__":
    main()
