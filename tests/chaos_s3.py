#!/usr/bin/env python3
"""A minimal S3 client (stdlib only, AWS Signature V4, path-style) for the
chaos test: list every object of a bucket and fetch it, independently of
ledgerfs's own store driver, so the bucket can be scanned for plaintext.

    chaos_s3.py ENDPOINT BUCKET list          one key a line
    chaos_s3.py ENDPOINT BUCKET get KEY       the object's bytes on stdout

Credentials from $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY; the region is
$AWS_REGION or us-east-1. Only loopback endpoints are expected (tests)."""
import datetime
import hashlib
import hmac
import http.client
import os
import sys
import urllib.parse
import xml.etree.ElementTree as ET

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def _enc(s, keep_slash=False):
    safe = UNRESERVED + ("/" if keep_slash else "")
    return "".join(c if c in safe else "".join("%%%02X" % b for b in c.encode())
                   for c in s)


class S3:
    def __init__(self, endpoint, access_key, secret_key, region="us-east-1",
                 timeout=60):
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme != "http":
            raise ValueError("only http:// endpoints (loopback tests): %s" % endpoint)
        self.host = u.hostname
        self.port = u.port or 80
        self.hosthdr = u.netloc
        self.ak, self.sk, self.region = access_key, secret_key, region
        self.timeout = timeout
        self.conn = None

    def _sign(self, method, path, query, payload_hash, now):
        amzdate = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        canon_query = "&".join("%s=%s" % (_enc(k), _enc(v))
                               for k, v in sorted(query.items()))
        headers = {"host": self.hosthdr, "x-amz-content-sha256": payload_hash,
                   "x-amz-date": amzdate}
        signed = ";".join(sorted(headers))
        canon_headers = "".join("%s:%s\n" % (k, headers[k]) for k in sorted(headers))
        creq = "\n".join([method, _enc(path, keep_slash=True), canon_query,
                          canon_headers, signed, payload_hash])
        scope = "%s/%s/s3/aws4_request" % (day, self.region)
        sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                         hashlib.sha256(creq.encode()).hexdigest()])

        def h(k, m):
            return hmac.new(k, m.encode(), hashlib.sha256).digest()
        k = h(h(h(h(("AWS4" + self.sk).encode(), day), self.region), "s3"),
              "aws4_request")
        sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s"
            % (self.ak, scope, signed, sig))
        return headers, canon_query

    def request(self, method, path, query=None, body=b""):
        query = query or {}
        phash = hashlib.sha256(body).hexdigest()
        now = datetime.datetime.now(datetime.timezone.utc)
        headers, q = self._sign(method, path, query, phash, now)
        url = _enc(path, keep_slash=True) + ("?" + q if q else "")
        for attempt in (1, 2):
            # One kept-alive connection; a fresh one if it was closed.
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, url, body=body or None, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, data
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def put(self, bucket, key, body):
        st, data = self.request("PUT", "/%s/%s" % (bucket, key), body=body)
        if st != 200:
            raise IOError("PUT %s/%s: HTTP %d: %s" % (bucket, key, st, data[:300]))

    def list_keys(self, bucket, prefix=""):
        keys, token = [], None
        for _ in range(100000):
            q = {"list-type": "2", "max-keys": "1000"}
            if prefix:
                q["prefix"] = prefix
            if token:
                q["continuation-token"] = token
            st, body = self.request("GET", "/" + bucket, q)
            if st != 200:
                raise IOError("LIST %s: HTTP %d: %s" % (bucket, st, body[:300]))
            root = ET.fromstring(body)
            ns = ""
            if root.tag.startswith("{"):
                ns = root.tag[:root.tag.index("}") + 1]
            for c in root.findall(ns + "Contents"):
                keys.append(c.find(ns + "Key").text)
            trunc = root.find(ns + "IsTruncated")
            if trunc is None or trunc.text != "true":
                return keys
            t = root.find(ns + "NextContinuationToken")
            if t is None or not t.text:
                raise IOError("LIST %s: truncated without a continuation token" % bucket)
            token = t.text
        raise IOError("LIST %s: too many pages" % bucket)

    def get(self, bucket, key):
        st, body = self.request("GET", "/%s/%s" % (bucket, key))
        if st != 200:
            raise IOError("GET %s/%s: HTTP %d: %s" % (bucket, key, st, body[:300]))
        return body


def from_env(endpoint):
    return S3(endpoint, os.environ["AWS_ACCESS_KEY_ID"],
              os.environ["AWS_SECRET_ACCESS_KEY"],
              os.environ.get("AWS_REGION") or "us-east-1")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    s3 = from_env(sys.argv[1])
    if sys.argv[3] == "list":
        for k in s3.list_keys(sys.argv[2]):
            print(k)
    elif sys.argv[3] == "get" and len(sys.argv) == 5:
        sys.stdout.buffer.write(s3.get(sys.argv[2], sys.argv[4]))
    else:
        sys.exit(__doc__)
