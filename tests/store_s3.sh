#!/bin/sh
# The s3:// store driver. First against a hostile fake S3 (python): bad
# listings (repeated or missing continuation tokens, bad entities, keys
# outside the prefix, garbage, endless bodies), error statuses, resets and
# oversized objects must give the documented errors, quickly. Then against
# a real S3: a Ceph radosgw started here (scripts/radosgw) on random
# loopback ports, always stopped on exit. Runs the store conformance test
# (tests/test_store.c) against it, then checks what only S3 can show: conditional PUT, odd keys through path and
# XML escaping, a missing bucket, a wrong secret, missing credentials and
# the credentials file, connection refused, and a stopped server (SIGSTOP:
# -EAGAIN within the driver's stall timeout, not a hang).
#
# Skipped (77) only when Ceph is not installed; under CI=true that is an
# error unless LFS_S3_ALLOW_SKIP=1. Bounded by LFS_TEST_TIMEOUT (600 s).
# shellcheck source=tests/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

top_builddir=${top_builddir:-$(cd "$(dirname "$LEDGERFS")/.." && pwd)}
RGW=$top_srcdir/scripts/radosgw
RGWDIR=$TMP/rgw
BUCKET=ledgerfs-test

FAKE_PID=
cleanup()
{
	[ -z "${WATCHDOG:-}" ] || kill "$WATCHDOG" 2>/dev/null || true
	[ -z "$FAKE_PID" ] || kill "$FAKE_PID" 2>/dev/null || true
	if [ -d "$RGWDIR" ]; then
		"$RGW" stop "$RGWDIR" || echo "store_s3: stopping radosgw failed" >&2
	fi
	_lib_cleanup
}
trap cleanup EXIT

# The whole test is bounded: past the limit the watchdog ends it (and the
# EXIT trap stops the servers).
# It polls in one-second steps so that it ends as soon as the test does
# (a long sleep would outlive the test and hold its output open).
(
	trap - EXIT
	end=$(($(date +%s) + ${LFS_TEST_TIMEOUT:-600}))
	while [ "$(date +%s)" -lt $end ]; do
		kill -0 $$ 2>/dev/null || exit 0
		sleep 1
	done
	echo "FAIL: store_s3: over ${LFS_TEST_TIMEOUT:-600} s; stopping" >&2
	kill -TERM $$
) &
WATCHDOG=$!

# A test program: from the build, else compiled here from the library.
program()
{
	if [ -x "$top_builddir/tests/$1" ]; then
		echo "$top_builddir/tests/$1"
		return
	fi
	_lib=$top_builddir/src/libledgerfs.a
	[ -f "$_lib" ] || hard_error "no $_lib: build first (scripts/build build)"
	# shellcheck disable=SC2046
	${CC:-cc} -std=gnu11 -I "$top_srcdir/src" -I "$top_builddir" \
		-o "$TMP/$1" "$top_srcdir/tests/$1.c" "$_lib" \
		$(pkg-config --cflags --libs check libcurl libsodium jansson fuse3) \
		-lpthread -lm >"$TMP/cc.log" 2>&1 ||
		hard_error "cannot build tests/$1.c: $(head -c 2000 "$TMP/cc.log")"
	echo "$TMP/$1"
}
PROBE=$(program store_probe) || exit $?
SECRET_CANARY=ledgerfs-test-secret-0123456789

# probe OP ARGS...: run store_probe against $U; first line in $RESULT.
probe()
{
	run timeout 60 "$PROBE" "$U" "$@"
	[ "$STATUS" -eq 0 ] || fail "store_probe $*: exit $STATUS: $(cat "$TMP/stdout" "$TMP/stderr")"
	RESULT=$(head -n 1 "$TMP/stdout")
	MS=$(sed -n 's/^ms=//p' "$TMP/stderr")
	if grep -qF "$SECRET_CANARY" "$TMP/stdout" "$TMP/stderr"; then
		fail "the secret key appears in the output of store_probe $*"
	fi
}

# ---- A hostile S3 (python, no signature checks): answers that make no
# sense must give clear errors, never a crash, a hang or a huge allocation.
need python3
cat >"$TMP/fakes3.py" <<'PY'
import http.server, socketserver, sys, urllib.parse

def page(keys, truncated=False, token=None):
    x = '<?xml version="1.0"?><ListBucketResult><Name>b</Name>'
    x += '<IsTruncated>%s</IsTruncated>' % ('true' if truncated else 'false')
    if token is not None:
        x += '<NextContinuationToken>%s</NextContinuationToken>' % token
    for k in keys:
        x += '<Contents><Key>%s</Key><Size>1</Size></Contents>' % k
    return (x + '</ListBucketResult>').encode()

def err(code):
    return ('<?xml version="1.0"?><Error><Code>%s</Code></Error>' % code).encode()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a):
        pass
    def send(self, status, body, length=None):
        self.send_response(status)
        self.send_header('Content-Length', str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        path, raw = u.path, u.query
        q = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        if 'list-type' in q:
            # The query must arrive canonical: sorted, values %-encoded.
            names = [kv.split('=')[0] for kv in raw.split('&')]
            if names != sorted(names) or '/' in raw:
                return self.send(400, err('NotCanonical'))
            pfx = q.get('prefix', '')
            tok = q.get('continuation-token')
            if pfx == 'p/pages/':
                if tok is None:
                    return self.send(200, page(['p/pages/a', 'p/pages/b&amp;c'], True, 't/1+=&amp;x'))
                if tok == 't/1+=&x':
                    return self.send(200, page(['p/pages/&#x41;&#66;'], True, 't2'))
                if tok == 't2':
                    return self.send(200, page(['p/pages/last']))
                return self.send(400, err('BadToken'))
            if pfx == 'p/loop/':
                return self.send(200, page(['p/loop/k'], True, 'same'))
            if pfx == 'p/notoken/':
                return self.send(200, page(['p/notoken/k'], True))
            if pfx == 'p/badent/':
                return self.send(200, page(['p/badent/a&bogus;b']))
            if pfx == 'p/nul/':
                return self.send(200, page(['p/nul/a&#0;b']))
            if pfx == 'p/outside/':
                return self.send(200, page(['elsewhere/k']))
            if pfx == 'p/garbage/':
                return self.send(200, b'this is not xml')
            if pfx == 'p/huge/':
                return self.send(200, b'', length=1 << 40)
            return self.send(200, page([]))
        key = path.split('/', 2)[2] if path.count('/') >= 2 else ''
        if key == 'p/big':
            return self.send(200, b'', length=100 << 20)
        if key == 'p/e503':
            return self.send(503, err('SlowDown'))
        if key == 'p/e400':
            return self.send(400, err('InvalidArgument'))
        if key == 'p/e403':
            return self.send(403, err('AccessDenied'))
        if key == 'p/e301':
            return self.send(301, err('PermanentRedirect'))
        if key == 'p/hugeerr':
            self.send_response(500)
            self.send_header('Content-Length', str(64 << 20))
            self.end_headers()
            chunk = b'x' * 65536
            try:
                for _ in range(1024):
                    self.wfile.write(chunk)
            except OSError:
                pass
            return
        if key == 'p/reset':
            self.close_connection = True
            return
        return self.send(404, err('NoSuchKey'))

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

srv = S(('127.0.0.1', 0), H)
with open(sys.argv[1], 'w') as f:
    f.write(str(srv.server_address[1]))
srv.serve_forever()
PY
python3 "$TMP/fakes3.py" "$TMP/fake.port" 2>"$TMP/fake.err" &
FAKE_PID=$!
i=0
while [ ! -s "$TMP/fake.port" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || hard_error "the fake S3 does not start: $(cat "$TMP/fake.err")"
	sleep 0.1
done
U="s3://bkt/p?endpoint=http://127.0.0.1:$(cat "$TMP/fake.port")"
export AWS_ACCESS_KEY_ID=fake AWS_SECRET_ACCESS_KEY=$SECRET_CANARY
note "hostile S3: pagination, tokens and entities"
probe list pages/
want ok
printf 'ok\npages/a\npages/b&c\npages/AB\npages/last\n' | cmp -s - "$TMP/stdout" ||
	fail "paged listing: $(cat "$TMP/stdout")"
for case in loop notoken badent nul outside garbage huge; do
	note "hostile S3: listing '$case' is EBADMSG"
	probe list "$case/"
	want EBADMSG
done
note "hostile S3: error statuses"
for case in e503:EAGAIN e400:EIO e403:EACCES e301:EIO hugeerr:EAGAIN \
	reset:EAGAIN big:EFBIG missing:ENOENT; do
	probe get "${case%%:*}"
	want "${case#*:}"
	[ "$MS" -lt 10000 ] || fail "get ${case%%:*} took $MS ms"
done
kill "$FAKE_PID" 2>/dev/null
wait "$FAKE_PID" 2>/dev/null
FAKE_PID=
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

# ---- Ceph radosgw, a real S3.
for t in ceph-mon ceph-osd radosgw radosgw-admin; do
	if ! command -v $t >/dev/null 2>&1; then
		msg="$t is not installed (apt-get install --no-install-recommends ceph-mon ceph-osd radosgw; scripts/install-deps)"
		if [ "${CI:-}" = true ] && [ "${LFS_S3_ALLOW_SKIP:-0}" != 1 ]; then
			hard_error "$msg"
		fi
		skip "$msg"
	fi
done
need curl timeout

TEST_STORE=$(program test_store) || exit $?

# Start radosgw on random ports (another run or a developer's radosgw may
# hold the defaults); try three times in case a port is taken.
started=false
for attempt in 1 2 3; do
	# Below Linux's ephemeral range (32768-60999).
	base=$((20000 + ($$ * 7 + attempt * 977) % 12000))
	t0=$(date +%s)
	if RGW_PORT=$base MON_PORT=$((base + 1)) \
		"$RGW" start "$RGWDIR" >"$TMP/rgw.env" 2>"$TMP/rgw.err"; then
		started=true
		break
	fi
	echo "radosgw start (attempt $attempt) failed: $(tail -n 3 "$TMP/rgw.err")" >&2
done
$started || hard_error "radosgw does not start; its logs: $(tail -n 20 "$RGWDIR"/log/*.log 2>/dev/null | tail -c 3000)"
note "radosgw started in $(($(date +%s) - t0)) s"
set -a
# shellcheck disable=SC1090,SC1091
. "$TMP/rgw.env"
set +a
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION AWS_DEFAULT_REGION \
	AWS_SHARED_CREDENTIALS_FILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
RGW_PID=$(cat "$RGWDIR/run/client.rgw.test.pid")
expect 0 "$RGW" mkbucket "$RGWDIR" "$BUCKET"

URL="s3://$BUCKET/conformance?endpoint=$LEDGERFS_S3_ENDPOINT&region=us-east-1"

store_conformance "$URL" 400 radosgw

U="s3://$BUCKET/probe"


# shellcheck disable=SC2016 # literal $ and backquote
odd='odd/a&b<c>d'"'"'e"f+g%h=i?j#k;l:m@n!o$p(q)r*s,t[u]v{w}x|y^z`~/.x/..y/&amp;'
store_probes_common "$odd"
note "odd keys: path encoding, canonical query, XML unescaping"
probe del "$odd"
want ok
probe get "$odd"
want ENOENT

note "endpoint from the environment, prefix-less URL"
U="s3://$BUCKET"
probe put plain/k v
want ok
probe list plain/
want ok
grep -qx plain/k "$TMP/stdout" || fail "prefix-less listing lacks plain/k"
U="s3://$BUCKET/probe"

note "missing bucket"
U="s3://no-such-bucket-here/x"
probe get k
want EIO
expect_stderr "bucket no-such-bucket-here does not exist.*create it first"
U="s3://$BUCKET/probe"

note "wrong secret"
AWS_SECRET_ACCESS_KEY=not-the-secret probe get c/one
want EACCES
expect_stderr "credentials refused"
AWS_ACCESS_KEY_ID=nobody probe put c/two x
want EACCES

note "credentials: none, then from a credentials file"
mkdir -p "$TMP/home/.aws"
run env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$TMP/home" \
	timeout 20 "$PROBE" "$U" get c/one
[ "$(head -n 1 "$TMP/stdout")" = open:EACCES ] ||
	fail "no credentials: got '$(head -n 1 "$TMP/stdout")'"
expect_stderr "no S3 credentials"
printf '[other]\naws_access_key_id = x\naws_secret_access_key = y\n\n[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
	"$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$TMP/home/.aws/credentials"
run env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$TMP/home" \
	timeout 20 "$PROBE" "$U" get c/one
[ "$(head -n 1 "$TMP/stdout")" = ok ] ||
	fail "credentials file: got '$(head -n 1 "$TMP/stdout")': $(cat "$TMP/stderr")"
run env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$TMP/home" \
	AWS_PROFILE=other timeout 20 "$PROBE" "$U" get c/one
[ "$(head -n 1 "$TMP/stdout")" = EACCES ] ||
	fail "credentials file, profile other: got '$(head -n 1 "$TMP/stdout")'"

note "connection refused"
U="s3://$BUCKET/probe?endpoint=http://127.0.0.1:1"
probe get c/one
want EAGAIN
[ "$MS" -lt 6000 ] || fail "connection refused took $MS ms"
U="s3://$BUCKET/probe"

note "a stopped server (SIGSTOP): -EAGAIN within the stall timeout"
kill -STOP "$RGW_PID"
probe get c/one
kill -CONT "$RGW_PID"
want EAGAIN
if [ "$MS" -lt 5000 ] || [ "$MS" -ge 30000 ]; then
	fail "a stopped server answered EAGAIN after $MS ms (want 5-30 s)"
fi
note "stopped server: EAGAIN after $MS ms"
# radosgw takes its time to come back on a saturated machine: 60 s.
until_t=$(($(date +%s) + 60))
while :; do
	probe get c/one
	[ "$RESULT" != ok ] || break
	[ "$(date +%s)" -lt $until_t ] ||
		fail "60 s after SIGCONT the store still answers $RESULT"
	sleep 0.5
done

note "stop radosgw"
"$RGW" stop "$RGWDIR" || fail "scripts/radosgw stop failed"
# (A zombie waiting for init to reap it does not count.)
if grep -q '^State:[[:space:]]*[^Z[:space:]]' "/proc/$RGW_PID/status" 2>/dev/null; then
	fail "radosgw ($RGW_PID) still runs after stop"
fi
probe get c/one
want EAGAIN
note "all S3 checks passed"
