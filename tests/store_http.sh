#!/bin/sh
# The http:// store driver against lighttpd + mod_webdav (scripts/lighttpd,
# random loopback ports, always stopped on exit): the store conformance test
# (tests/test_store.c), then what only WebDAV shows: conditional PUT, keys
# that need percent-encoding and "." segments, basic auth from the URL and
# the environment (never in messages), a stopped server (SIGSTOP: -EAGAIN
# within the driver's 15 s stall limit, no hang), a refused connection, and
# a hostile WebDAV server (a small python3 one) answering malformed, tricky,
# deep and wide listings, an endless object, an endless error and a redirect.
#
# Skipped (77) only when lighttpd or its WebDAV module is not installed;
# under CI=true that is an error unless LFS_HTTP_ALLOW_SKIP=1. Bounded by
# LFS_TEST_TIMEOUT (300 s).
# shellcheck source=tests/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/tests/lib.sh"

LIGHTTPD=$top_srcdir/scripts/lighttpd
missing=
command -v lighttpd >/dev/null 2>&1 || [ -x /usr/sbin/lighttpd ] ||
	missing="lighttpd is not installed"
if [ -z "$missing" ]; then
	missing="lighttpd's WebDAV module is not installed"
	for _m in /usr/lib/lighttpd/mod_webdav.so /usr/lib/*/lighttpd/mod_webdav.so \
		/usr/local/lib/lighttpd/mod_webdav.so; do
		[ ! -f "$_m" ] || missing=
	done
fi
if [ -n "$missing" ]; then
	msg="$missing (apt-get install lighttpd lighttpd-mod-webdav; scripts/install-deps)"
	if [ "${CI:-}" = true ] && [ "${LFS_HTTP_ALLOW_SKIP:-0}" != 1 ]; then
		hard_error "$msg"
	fi
	skip "$msg"
fi
need python3 timeout

top_builddir=${top_builddir:-$(cd "$(dirname "$LEDGERFS")/.." && pwd)}
DAV=$TMP/dav
DAV2=$TMP/dav-auth
FAKE_PID=

cleanup()
{
	[ -z "${WATCHDOG:-}" ] || kill "$WATCHDOG" 2>/dev/null || true
	[ -z "$FAKE_PID" ] || kill "$FAKE_PID" 2>/dev/null || true
	for _d in "$DAV" "$DAV2"; do
		if [ -d "$_d" ]; then
			"$LIGHTTPD" stop "$_d" ||
				echo "store_http: stopping lighttpd failed" >&2
		fi
	done
	_lib_cleanup
}
trap cleanup EXIT

# The whole test is bounded: past the limit the watchdog ends it (and the
# EXIT trap stops the servers). It polls, so it never outlives the test by
# more than a second.
(
	_t=0
	while [ "$_t" -lt "${LFS_TEST_TIMEOUT:-300}" ]; do
		kill -0 $$ 2>/dev/null || exit 0
		sleep 1
		_t=$((_t + 1))
	done
	echo "store_http: over ${LFS_TEST_TIMEOUT:-300} s; stopping" >&2
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
TEST_STORE=$(program test_store) || exit $?
PROBE=$(program store_probe) || exit $?

# start_dav DIR: lighttpd on a random free port (three tries); sets PORT.
start_dav()
{
	for _attempt in 1 2 3; do
		PORT=$((20000 + ($$ * 7 + _attempt * 977 + ${#1} * 131) % 40000))
		if LIGHTTPD_PORT=$PORT "$LIGHTTPD" start "$1" >"$TMP/dav.out" \
			2>"$TMP/dav.err"; then
			return 0
		fi
		echo "lighttpd start (attempt $_attempt) failed: $(tail -n 3 "$TMP/dav.err")" >&2
	done
	hard_error "lighttpd does not start: $(tail -n 5 "$1/error.log" 2>/dev/null)"
}

# probe OP ARGS...: run store_probe against $U; first line in $RESULT,
# elapsed milliseconds in $MS.
probe()
{
	run timeout 60 "$PROBE" "$U" "$@"
	[ "$STATUS" -eq 0 ] || fail "store_probe $*: exit $STATUS: $(cat "$TMP/stdout" "$TMP/stderr")"
	RESULT=$(head -n 1 "$TMP/stdout")
	MS=$(sed -n 's/^ms=//p' "$TMP/stderr")
}

start_dav "$DAV"
BASE=http://127.0.0.1:$PORT
LIGHTTPD_PORT=$PORT "$LIGHTTPD" check "$DAV" ||
	fail "lighttpd does not honour conditional PUT"
note "lighttpd WebDAV on $BASE"

URL=$BASE/conformance
store_conformance "$URL" 200 lighttpd

U=$BASE/probe

# shellcheck disable=SC2016 # literal $ and backquote
odd='odd/a&b<c>d'"'"'e"f+g%h=i?j#k;l:m@n!o$p(q)r*s,t[u]v{w}x|y^z`~/.x/&amp;'
store_probes_common "$odd"
note "odd keys: percent-encoding both ways, prefixes, '.' segments"
probe list "odd/b"
want ok
[ "$(wc -l <"$TMP/stdout")" -eq 1 ] || fail "prefix odd/b matched: $(cat "$TMP/stdout")"
probe list ""
want ok
if ! grep -qxF "$odd" "$TMP/stdout" || ! grep -qx c/one "$TMP/stdout"; then
	fail "listing everything: $(cat "$TMP/stdout")"
fi
probe del "$odd"
want ok
probe get "$odd"
want ENOENT
probe del "$odd"
want ok
# WebDAV folds "a/./b" into "a/b": such keys are refused, not aliased.
probe put odd/./x v
want EINVAL
probe put ../escape v
want EINVAL
probe list ../
want EINVAL

note "a store URL with doubled slashes lists what it wrote"
U=$BASE//probe//twice/
probe put c/two v
want ok
probe list c/
want ok
grep -qx c/two "$TMP/stdout" || fail "a //-URL lists '$(cat "$TMP/stdout")', not c/two"
U=$BASE/probe/twice
probe list c/
want ok
grep -qx c/two "$TMP/stdout" || fail "the //-URL did not write under /probe/twice"

note "credentials never reach the store's URL or a message"
U="http://someone:s3cr3t-pw@127.0.0.1:1/probe"
probe get c/one
want EAGAIN
grep -q "http://127.0.0.1:1/probe/c/one" "$TMP/stderr" ||
	fail "the failure names no URL: $(cat "$TMP/stderr")"
! grep -q "s3cr3t-pw\|someone" "$TMP/stdout" "$TMP/stderr" ||
	fail "credentials appear in the output: $(cat "$TMP/stderr")"
run timeout 20 "$PROBE" "$BASE/probe?x=1" get c/one
[ "$(head -n 1 "$TMP/stdout")" = open:EINVAL ] ||
	fail "a URL with a query: got '$(head -n 1 "$TMP/stdout")'"

note "basic auth: refused, from the URL, from the environment"
export LIGHTTPD_AUTH="alice:pw-$$"
start_dav "$DAV2"
unset LIGHTTPD_AUTH
U=http://127.0.0.1:$PORT/probe
probe put auth/x v
want EACCES
expect_stderr "refused access"
U="http://alice:pw-$$@127.0.0.1:$PORT/probe"
probe put auth/x v
want ok
U="http://alice:wrong-$$@127.0.0.1:$PORT/probe"
probe get auth/x
want EACCES
! grep -q "pw-$$\|wrong-$$" "$TMP/stdout" "$TMP/stderr" ||
	fail "a password appears in the output"
U=http://127.0.0.1:$PORT/probe
export LEDGERFS_HTTP_USER=alice LEDGERFS_HTTP_PASSWORD="pw-$$"
probe get auth/x
want ok
unset LEDGERFS_HTTP_USER
U="http://alice@127.0.0.1:$PORT/probe"
probe list auth/
want ok
grep -qx auth/x "$TMP/stdout" || fail "authenticated listing: $(cat "$TMP/stdout")"
unset LEDGERFS_HTTP_PASSWORD
"$LIGHTTPD" stop "$DAV2"

note "a stopped server (SIGSTOP): -EAGAIN within the stall limit, no hang"
U=$BASE/probe
LPID=$(cat "$DAV/lighttpd.pid")
big=$(head -c 100000 /dev/zero | tr '\0' x)
kill -STOP "$LPID"
timeout 60 "$PROBE" "$U" get c/one >"$TMP/s-get" 2>"$TMP/s-get.err" &
g=$!
timeout 60 "$PROBE" "$U" put stopped/big "$big" >"$TMP/s-put" 2>"$TMP/s-put.err" &
p=$!
timeout 60 "$PROBE" "$U" list "" >"$TMP/s-list" 2>"$TMP/s-list.err" &
l=$!
wg=0 wp=0 wl=0
wait $g || wg=$?
wait $p || wp=$?
wait $l || wl=$?
kill -CONT "$LPID"
if [ "$wg" -ne 0 ] || [ "$wp" -ne 0 ] || [ "$wl" -ne 0 ]; then
	fail "store_probe against a stopped server hung or crashed ($wg $wp $wl)"
fi
for f in s-get s-put s-list; do
	[ "$(head -n 1 "$TMP/$f")" = EAGAIN ] ||
		fail "$f: got '$(head -n 1 "$TMP/$f")': $(tail -c 1000 "$TMP/$f.err")"
	ms=$(sed -n 's/^ms=//p' "$TMP/$f.err")
	if [ "$ms" -lt 10000 ] || [ "$ms" -ge 30000 ]; then
		fail "$f: EAGAIN after $ms ms (want the 15 s stall limit)"
	fi
done
note "stopped server: get, put and list gave EAGAIN after ${ms} ms"
i=0
while :; do
	probe get c/one
	[ "$RESULT" != ok ] || break
	i=$((i + 1))
	[ $i -lt 20 ] || fail "after SIGCONT the store still answers $RESULT"
	sleep 0.5
done

note "stop lighttpd: connection refused is EAGAIN at once"
"$LIGHTTPD" stop "$DAV" || fail "scripts/lighttpd stop failed"
kill -0 "$LPID" 2>/dev/null && fail "lighttpd ($LPID) still runs after stop"
probe get c/one
want EAGAIN
[ "$MS" -lt 6000 ] || fail "connection refused took $MS ms"
probe list ""
want EAGAIN

# ---- a hostile WebDAV server ----
note "a hostile WebDAV server: tricky, malformed, deep and wide answers"
cat >"$TMP/fake.py" <<'EOF'
import http.server, os, sys, threading

threading.Timer(120, lambda: os._exit(0)).start()  # never outlive the test
D = 'xmlns:D="DAV:"'

def resp(href, coll=False, ns="D:"):
    rt = "<%scollection/>" % ns if coll else ""
    return ("<{n}response><{n}href>{h}</{n}href><{n}propstat><{n}prop>"
            "<{n}resourcetype>{rt}</{n}resourcetype></{n}prop>"
            "<{n}status>HTTP/1.1 200 OK</{n}status></{n}propstat>"
            "</{n}response>\n").format(n=ns, h=href, rt=rt)

def ms(*rs):
    return '<?xml version="1.0"?>\n<D:multistatus %s>\n%s</D:multistatus>\n' % (
        D, "".join(rs))

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def send(self, code, body, length=None):
        body = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Length",
                         str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_PROPFIND(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        p = self.path
        port = self.server.server_address[1]
        if p == "/s/L/car/":
            self.send(207, ms(
                resp("/s/L/car/", True),
                resp("/s/L/car/k%31").replace("D:", "d:").replace(
                    "<d:response>", '<d:response xmlns:d="DAV:">'),
                resp("http://127.0.0.1:%d/s/L/car/k2" % port),
                resp("/s/L/car/a&amp;b"),
                resp("/other/x"),
                resp("/s/L/car/../../../etc/passwd"),
                resp("/s/L/car/bad%0A"),
                resp("/s/L/car/<b>x</b>"),
                resp("/s/L/car/sp%20ace"),
                '<response xmlns="DAV:"><href>/s/L/car/k3</href>'
                "<propstat><prop><resourcetype/></prop></propstat></response>",
                "<!-- " + resp("/s/L/car/fake") + " -->",
                resp("/s/L/car/sub/", True),
                resp("/s/L/car/%s" % ("x" * 5000)),
                resp("/s/L/car/k&#x34;&#53;"),
                resp("/s/L/car/k1"),
                resp("/s/L/car/sub/k9"),
                resp("/s/L/car/sub/deeper/", True),
                resp("/s/L/car/&bogus;")))
        elif p == "/s/L/car/sub/":
            self.send(207, ms(resp("/s/L/car/sub/", True),
                              resp("/s/L/car/", True),
                              resp("/s/", True),
                              resp("/s/L/car/sub/k4")))
        elif p.startswith("/s/deep/"):
            self.send(207, ms(resp(p, True), resp(p + "d/", True)))
        elif p == "/s/wide/":
            self.send(207, ms(*[resp("/s/wide/c%d/" % i, True)
                                for i in range(300)]))
        elif p.startswith("/s/wide/c"):
            self.send(207, ms(resp(p, True), resp(p + "k")))
        elif p == "/s/garbage/":
            self.send(207, "this is not xml at all")
        elif p == "/s/trunc/":
            self.send(207, ms(resp("/s/trunc/k1"))[:-20])
        elif p == "/s/doctype/":
            self.send(207, '<!DOCTYPE x [<!ENTITY a "b">]>' + ms(
                resp("/s/doctype/k1")))
        elif p == "/s/unterminated/":
            self.send(207, '<D:multistatus %s><D:response><D:href' % D)
        elif p == "/s/e500/":
            self.send(503, "busy")
        elif p == "/s/e403/":
            self.send(403, "no")
        elif p == "/s/plain/":
            self.send(200, "<html>hello</html>")
        else:
            self.send(404, "")

    def do_GET(self):
        if self.path == "/s/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10 ** 12))
            self.end_headers()
            self.wfile.write(b"x" * 65536)
            self.wfile.flush()
        elif self.path == "/s/errbody":
            self.send_response(500)
            self.send_header("Content-Length", str(10 ** 9))
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"e" * 65536)
            except OSError:
                pass
        elif self.path == "/s/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send(404, "")

s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.handle_error = lambda *a: None  # clients hanging up early is expected
with open(sys.argv[1], "w") as f:
    f.write(str(s.server_address[1]))
s.serve_forever()
EOF
python3 "$TMP/fake.py" "$TMP/fake.port" &
FAKE_PID=$!
i=0
while [ ! -s "$TMP/fake.port" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || hard_error "the fake WebDAV server did not start"
	sleep 0.1
done
U=http://127.0.0.1:$(cat "$TMP/fake.port")/s

# keys_are KEY...: the last listing gave exactly these keys (any order).
keys_are()
{
	sed 1d "$TMP/stdout" | sort >"$TMP/keys"
	printf '%s\n' "$@" | sed '/^$/d' | sort >"$TMP/want"
	cmp -s "$TMP/keys" "$TMP/want" ||
		fail "listing gave: $(tr '\n' ' ' <"$TMP/keys"); want: $*"
}

probe list L/car/
want ok
keys_are 'L/car/a&b' L/car/k1 L/car/k2 L/car/k3 L/car/k45 L/car/sub/k4
probe list L/car/k
want ok
keys_are L/car/k1 L/car/k2 L/car/k3 L/car/k45
probe list deep/
want ok
keys_are
expect_stderr "deeper than"
probe list wide/
want ok
[ "$(sed 1d "$TMP/stdout" | wc -l)" -eq 300 ] ||
	fail "wide listing: $(sed 1d "$TMP/stdout" | wc -l) keys, want 300"
for bad in garbage trunc doctype unterminated plain; do
	probe list "$bad/"
	[ "$RESULT" = EBADMSG ] || fail "listing $bad/: got '$RESULT'"
done
probe list e500/
want EAGAIN
probe list e403/
want EACCES
probe list nothing/
want ok
keys_are
probe get huge
want EFBIG
probe get errbody
want EAGAIN # a 500: the status speaks, the endless body is not read
probe get redirect
want EIO
expect_stderr "unexpected answer HTTP 302"
kill "$FAKE_PID" 2>/dev/null || true
FAKE_PID=
note "all http store checks passed"
