package test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinmesh/skein/test/pattern"
)

// invokePair is the mesh most invoke tests share: app-a and app-b, each a
// test app behind its own sidecar, in namespace default.
type invokePair struct {
	m            *mesh
	a, b         *sidecar
	aPort, bPort int
	appB         *proc
}

func startInvokePair(t *testing.T) invokePair {
	t.Helper()
	m := newMesh(t)
	bPort, appB := m.app("b")
	aPort, _ := m.app("a")
	return invokePair{m: m, b: m.sidecar("app-b", bPort), a: m.sidecar("app-a", aPort), aPort: aPort, bPort: bPort, appB: appB}
}

// testHostIP is the DAPR_HOST_IP the invoke tests give their sidecars, so
// the Forwarded headers have a known value (TEST-NET-1: never dialled, the
// sidecars listen on 127.0.0.1).
const testHostIP = "192.0.2.7"

// TestInvokeSemantics covers the HTTP invoke API of contract §1 end to end
// through two sidecars: the three ways to name a target, verbs, method
// normalisation, what passes through unchanged in both directions and what
// the sidecars remove and add. All subtests share one mesh.
func TestInvokeSemantics(t *testing.T) {
	t.Setenv("DAPR_HOST_IP", testHostIP)
	p := startInvokePair(t)
	t.Run("target forms", func(t *testing.T) { testTargetForms(t, p) })
	t.Run("verbs", func(t *testing.T) { testVerbs(t, p) })
	t.Run("method normalisation", func(t *testing.T) { testMethodNormalisation(t, p) })
	t.Run("passthrough", func(t *testing.T) { testPassthrough(t, p) })
	t.Run("hop-by-hop headers", func(t *testing.T) { testHopByHop(t, p) })
	t.Run("identity headers", func(t *testing.T) { testIdentityHeaders(t, p) })
	t.Run("traceparent", func(t *testing.T) { testTraceparent(t, p) })
	t.Run("forwarded headers", func(t *testing.T) { testForwarded(t, p) })
	t.Run("metadata", func(t *testing.T) { testMetadata(t, p) })
}

func basicAppID(user, id string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+id))
}

// testTargetForms: path form, dapr-app-id header form and Basic-auth form
// (contract §1.2), with <app-id>.<namespace> and repeated slashes.
func testTargetForms(t *testing.T, p invokePair) {
	tests := []struct {
		name     string
		path     string
		header   http.Header // sent as given: keys need not be canonical
		wantPath string
	}{
		{name: "path form", path: "/v1.0/invoke/app-b/method/orders/42", wantPath: "/orders/42"},
		{name: "path form with namespace", path: "/v1.0/invoke/app-b.default/method/orders/42", wantPath: "/orders/42"},
		{name: "path form with escaped target", path: "/v1.0/invoke/app%2Db/method/orders/42", wantPath: "/orders/42"},
		{name: "path form with repeated slashes", path: "/v1.0////invoke//app-b/method//foo", wantPath: "/foo"},
		{name: "path form with empty method", path: "/v1.0/invoke/app-b/method/", wantPath: "/"},
		{name: "header form", path: "/orders/42", header: http.Header{"dapr-app-id": {"app-b"}}, wantPath: "/orders/42"},
		{name: "header form with namespace", path: "/orders/42", header: http.Header{"Dapr-App-Id": {"app-b.default"}}, wantPath: "/orders/42"},
		{name: "header form with repeated slashes", path: "///foo//bar", header: http.Header{"Dapr-App-Id": {"app-b"}}, wantPath: "/foo/bar"},
		{name: "header wins over invoke path", path: "/v1.0/invoke/app-a/method/x", header: http.Header{"Dapr-App-Id": {"app-b"}},
			wantPath: "/v1.0/invoke/app-a/method/x"},
		{name: "basic auth form", path: "/orders/42", header: http.Header{"Authorization": {basicAppID("dapr-app-id", "app-b")}}, wantPath: "/orders/42"},
		{name: "basic auth user is case-insensitive", path: "/orders/42", header: http.Header{"Authorization": {basicAppID("DAPR-APP-ID", "app-b")}}, wantPath: "/orders/42"},
		{name: "basic auth with namespace", path: "/orders/42", header: http.Header{"Authorization": {basicAppID("dapr-app-id", "app-b.default")}}, wantPath: "/orders/42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, p.a.url(tt.path), nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, b := do(t, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200: %s", resp.StatusCode, b)
			}
			e := decodeEcho(t, b)
			got := []string{e.Instance, e.Path, strings.Join(e.Header["Dapr-Callee-App-Id"], ",")}
			if diff := cmp.Diff([]string{"b", tt.wantPath, "app-b"}, got); diff != "" {
				t.Errorf("instance, path, callee (-want +got):\n%s", diff)
			}
			if v, ok := e.Header["Dapr-App-Id"]; ok {
				t.Errorf("app got Dapr-App-Id %q; the sidecar must remove it", v)
			}
			// Dapr keeps Authorization: it reaches the app.
			if want := tt.header["Authorization"]; want != nil {
				if diff := cmp.Diff(want, e.Header["Authorization"]); diff != "" {
					t.Errorf("Authorization (-want +got):\n%s", diff)
				}
			}
		})
	}

	t.Run("namespace without instances", func(t *testing.T) {
		resp, b := do(t, newRequest(t, http.MethodGet, p.a.invokeURL("app-b.other", "orders/42"), nil))
		checkInvokeError(t, resp, b, http.StatusInternalServerError, "APP_NOT_FOUND", "failed to invoke, id: app-b.other, err: ")
	})
}

// testVerbs: every verb reaches the app (contract §1.4); a verb outside
// Dapr's HTTPExtension enum arrives as POST.
func testVerbs(t *testing.T, p invokePair) {
	tests := []struct {
		name, verb, wantVerb, body string
	}{
		{name: "GET", verb: "GET", wantVerb: "GET"},
		{name: "HEAD", verb: "HEAD", wantVerb: "HEAD"},
		{name: "POST", verb: "POST", wantVerb: "POST", body: "a body"},
		{name: "PUT", verb: "PUT", wantVerb: "PUT", body: "a body"},
		{name: "DELETE", verb: "DELETE", wantVerb: "DELETE", body: "a body"},
		{name: "PATCH", verb: "PATCH", wantVerb: "PATCH", body: "a body"},
		{name: "OPTIONS", verb: "OPTIONS", wantVerb: "OPTIONS"},
		{name: "TRACE", verb: "TRACE", wantVerb: "TRACE"},
		{name: "unknown verb is POST", verb: "PROPFIND", wantVerb: "POST", body: "a body"},
	}
	for _, target := range []string{"app-b", "app-a"} {
		for _, tt := range tests {
			t.Run(target+"/"+tt.name, func(t *testing.T) {
				testVerb(t, p.a.invokeURL(target, "verbs?v=1"), tt.verb, tt.wantVerb, tt.body)
			})
		}
	}
}

// testVerb sends one call and checks the verb, path, query and body the app
// saw.
func testVerb(t *testing.T, url, verb, wantVerb, body string) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := newRequest(t, verb, url, r)
	req.Header.Set("X-Echo-Status", "202")
	resp, b := do(t, req)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status = %d, want 202: %s", resp.StatusCode, b)
	}
	if got := resp.Header.Get("X-Echo-Method"); got != wantVerb {
		t.Errorf("app saw verb %q, want %q", got, wantVerb)
	}
	if verb == http.MethodHead {
		if len(b) != 0 {
			t.Errorf("HEAD response has a body: %q", b)
		}
		return
	}
	e := decodeEcho(t, b)
	got := []string{e.Method, e.Path, e.Query, strconv.FormatInt(e.BodyLen, 10)}
	want := []string{wantVerb, "/verbs", "v=1", strconv.Itoa(len(body))}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("method, path, query, body length (-want +got):\n%s", diff)
	}
}

// testMethodNormalisation is contract §1.3's table end to end: the app
// echoes the path and query it got; forbidden characters give 500
// INVALID_METHOD before anything is sent.
func testMethodNormalisation(t *testing.T, p invokePair) {
	tests := []struct {
		name       string
		path       string // on the caller's HTTP port
		appID      string // sent as dapr-app-id when set
		wantPath   string
		wantQuery  string
		wantReason string // set: a 500 error with this reason instead
	}{
		{name: "escaped quote", path: "/v1.0/invoke/app-b/method/test%22stream", wantPath: `/test"stream`},
		{name: "escaped star", path: "/v1.0/invoke/app-b/method/test%2Astream", wantPath: "/test*stream"},
		{name: "escaped backslash", path: "/v1.0/invoke/app-b/method/test%5Cstream", wantPath: `/test\stream`},
		{name: "escaped slash traversal", path: "/v1.0/invoke/app-b/method/admin%2F..%2Fpublic", wantPath: "/public"},
		{name: "leading traversal", path: "/v1.0/invoke/app-b/method/..%2F..%2Fsecret", wantPath: "/secret"},
		{name: "dot segments", path: "/v1.0/invoke/app-b/method/a/./b/../c", wantPath: "/a/c"},
		{name: "trailing slash", path: "/v1.0/invoke/app-b/method/a/b/", wantPath: "/a/b"},
		{name: "escaped hash", path: "/v1.0/invoke/app-b/method/test%23stream", wantReason: "INVALID_METHOD"},
		{name: "escaped question mark", path: "/v1.0/invoke/app-b/method/test%3Fstream", wantReason: "INVALID_METHOD"},
		{name: "escaped NUL", path: "/v1.0/invoke/app-b/method/test%00stream", wantReason: "INVALID_METHOD"},
		{name: "escaped CR", path: "/v1.0/invoke/app-b/method/test%0Dstream", wantReason: "INVALID_METHOD"},
		{name: "escaped DEL", path: "/v1.0/invoke/app-b/method/test%7Fstream", wantReason: "INVALID_METHOD"},
		{name: "escaped percent", path: "/v1.0/invoke/app-b/method/test%25stream", wantReason: "INVALID_METHOD"},
		{name: "literal hash is a fragment", path: "/v1.0/invoke/app-b/method/test#stream", wantPath: "/test"},
		{name: "literal question mark starts the query", path: "/v1.0/invoke/app-b/method/test?stream", wantPath: "/test", wantQuery: "stream"},
		{name: "header form traversal", path: "/admin/../public", appID: "app-b", wantPath: "/public"},
		{name: "header form escaped NUL", path: "/test%00stream", appID: "app-b", wantReason: "INVALID_METHOD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, p.a.url(tt.path), nil)
			if tt.appID != "" {
				req.Header.Set("Dapr-App-Id", tt.appID)
			}
			resp, b := do(t, req)
			if tt.wantReason != "" {
				checkInvokeError(t, resp, b, http.StatusInternalServerError, tt.wantReason, "failed to invoke, id: app-b, err: invalid method: ")
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200: %s", resp.StatusCode, b)
			}
			e := decodeEcho(t, b)
			if diff := cmp.Diff([]string{tt.wantPath, tt.wantQuery}, []string{e.Path, e.Query}); diff != "" {
				t.Errorf("path, query the app saw (-want +got):\n%s", diff)
			}
		})
	}
}

// testPassthrough: query strings, end-to-end headers, bodies and status
// codes cross both sidecars unchanged in both directions (contract §1.5-1.7).
func testPassthrough(t *testing.T, p invokePair) {
	t.Run("query", func(t *testing.T) {
		const q = "x=1&y=a%20b&y=2&semi=a;b&odd=%zz&empty="
		_, b := do(t, newRequest(t, http.MethodGet, p.a.invokeURL("app-b", "q?"+q), nil))
		if e := decodeEcho(t, b); e.Query != q {
			t.Errorf("app got query %q, want %q verbatim", e.Query, q)
		}
	})

	t.Run("request headers", func(t *testing.T) {
		req := newRequest(t, http.MethodPost, p.a.invokeURL("app-b", "headers"), strings.NewReader(`{"a":1}`))
		req.Header.Add("Daprtest-Multi", "first")
		req.Header.Add("Daprtest-Multi", "second")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/plain")
		req.Header.Set("User-Agent", "skein-e2e/1")
		req.Header.Set("X-Req", "r1")
		req.Header.Set("Cookie", "a=1; b=2")
		_, b := do(t, req)
		e := decodeEcho(t, b)
		want := http.Header{
			"Daprtest-Multi": {"first", "second"},
			"Content-Type":   {"application/json"},
			"Content-Length": {"7"},
			"Accept":         {"application/json, text/plain"},
			"User-Agent":     {"skein-e2e/1"},
			"X-Req":          {"r1"},
			"Cookie":         {"a=1; b=2"},
		}
		got := http.Header{}
		for k := range want {
			got[k] = e.Header[k]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("headers the app got (-want +got):\n%s", diff)
		}
	})

	t.Run("response headers", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, p.a.invokeURL("app-b", "headers"), nil)
		req.Header.Add("X-Echo-Header", "X-Multi: r1")
		req.Header.Add("X-Echo-Header", "X-Multi: r2")
		req.Header.Add("X-Echo-Header", "Set-Cookie: a=1")
		req.Header.Add("X-Echo-Header", "Set-Cookie: b=2")
		resp, _ := do(t, req)
		got := http.Header{"X-Multi": resp.Header["X-Multi"], "Set-Cookie": resp.Header["Set-Cookie"],
			"Content-Type": resp.Header["Content-Type"], "X-Instance": resp.Header["X-Instance"]}
		want := http.Header{"X-Multi": {"r1", "r2"}, "Set-Cookie": {"a=1", "b=2"},
			"Content-Type": {"application/json"}, "X-Instance": {"b"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("response headers (-want +got):\n%s", diff)
		}
	})

	for _, n := range []int64{0, 4, 8 << 10, 1 << 20} {
		t.Run("request body "+strconv.FormatInt(n, 10)+" bytes", func(t *testing.T) {
			req := newRequest(t, http.MethodPut, p.a.invokeURL("app-b", "body"), pattern.NewReader(n))
			req.ContentLength = n
			_, b := do(t, req)
			e := decodeEcho(t, b)
			sum := pattern.Sum(n)
			if diff := cmp.Diff([]string{strconv.FormatInt(n, 10), hex.EncodeToString(sum[:])},
				[]string{strconv.FormatInt(e.BodyLen, 10), e.BodyHash}); diff != "" {
				t.Errorf("body length, sha256 the app got (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("chunked request body", func(t *testing.T) {
		const n = 100 << 10
		req := newRequest(t, http.MethodPost, p.a.invokeURL("app-b", "body"), io.MultiReader(pattern.NewReader(n)))
		req.ContentLength = -1
		_, b := do(t, req)
		e := decodeEcho(t, b)
		sum := pattern.Sum(n)
		if e.BodyLen != n || e.BodyHash != hex.EncodeToString(sum[:]) {
			t.Errorf("app got %d bytes (sha256 %s), want %d", e.BodyLen, e.BodyHash, n)
		}
		if te := e.Header["Content-Length"]; te != nil {
			t.Errorf("app got Content-Length %q for a body of unknown length", te)
		}
	})

	for _, n := range []int64{0, 1, 8 << 10, 1 << 20} {
		t.Run("response body "+strconv.FormatInt(n, 10)+" bytes", func(t *testing.T) {
			resp, b := do(t, newRequest(t, http.MethodGet, p.a.invokeURL("app-b", "download?size="+strconv.FormatInt(n, 10)), nil))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d: %s", resp.StatusCode, b)
			}
			if got, want := sha256.Sum256(b), pattern.Sum(n); len(b) != int(n) || got != want {
				t.Errorf("client got %d bytes not matching the app's %d", len(b), n)
			}
		})
	}

	for _, status := range []int{http.StatusCreated, http.StatusAccepted, http.StatusNotFound, http.StatusConflict, http.StatusBadGateway} {
		t.Run("status "+strconv.Itoa(status), func(t *testing.T) {
			req := newRequest(t, http.MethodPost, p.a.invokeURL("app-b", "status"), strings.NewReader("x"))
			req.Header.Set("X-Echo-Status", strconv.Itoa(status))
			resp, b := do(t, req)
			if resp.StatusCode != status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, status, b)
			}
			// The app's own body, not a sidecar error envelope.
			if e := decodeEcho(t, b); e.Instance != "b" || e.Path != "/status" {
				t.Errorf("body is not app b's echo of /status: %s", b)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want the app's application/json", ct)
			}
		})
	}

	t.Run("redirect is returned, not followed", func(t *testing.T) {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(p.a.invokeURL("app-b", "redirect"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := []string{strconv.Itoa(resp.StatusCode), resp.Header.Get("Location"), resp.Header.Get("X-Instance")}
		if diff := cmp.Diff([]string{"307", "/elsewhere", "b"}, got); diff != "" {
			t.Errorf("status, Location, X-Instance (-want +got):\n%s", diff)
		}
	})
}

// hopHeaders are the hop-by-hop request headers of contract §1.6, sent on
// a raw connection so the client library cannot drop or rewrite any.
const hopHeaders = "Connection: keep-alive, X-Custom-Hop\r\n" +
	"X-Custom-Hop: 1\r\n" +
	"Keep-Alive: timeout=5\r\n" +
	"Proxy-Connection: keep-alive\r\n" +
	"Te: trailers, deflate\r\n" +
	"Trailer: X-Trailing\r\n" +
	"Upgrade: example/1\r\n" +
	"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
	"Http2-Settings: AAMAAABkAAQAAP__\r\n"

// testHopByHop: hop-by-hop headers, including one named in Connection,
// reach neither the app (remote and self-invocation) nor the client.
func testHopByHop(t *testing.T, p invokePair) {
	removed := []string{"Connection", "X-Custom-Hop", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
		"Upgrade", "Proxy-Authorization", "Http2-Settings"}
	for _, target := range []string{"app-b", "app-a"} {
		t.Run("request to "+target, func(t *testing.T) {
			resp, b := rawExchange(t, p.a.http, "POST /v1.0/invoke/"+target+"/method/hop HTTP/1.1\r\n"+
				"Host: x\r\n"+hopHeaders+"X-End-To-End: kept\r\nContent-Length: 4\r\n\r\nping")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d: %s", resp.StatusCode, b)
			}
			e := decodeEcho(t, b)
			for _, k := range removed {
				if v, ok := e.Header[k]; ok {
					t.Errorf("app got hop-by-hop header %s: %q", k, v)
				}
			}
			if diff := cmp.Diff([]string{"kept"}, e.Header["X-End-To-End"]); diff != "" {
				t.Errorf("end-to-end header X-End-To-End (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("response", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, p.a.invokeURL("app-b", "hop"), nil)
		for _, h := range []string{"Connection: X-Resp-Hop", "X-Resp-Hop: 1", "Keep-Alive: timeout=9",
			"Proxy-Authenticate: Basic", "Upgrade: example/1", "X-Resp-Kept: 1"} {
			req.Header.Add("X-Echo-Header", h)
		}
		resp, _ := do(t, req)
		for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"} {
			if v, ok := resp.Header[k]; ok {
				t.Errorf("client got hop-by-hop response header %s: %q", k, v)
			}
		}
		if got := resp.Header.Get("X-Resp-Kept"); got != "1" {
			t.Errorf("end-to-end response header X-Resp-Kept = %q, want 1", got)
		}
	})
}

// testIdentityHeaders: dapr-caller-app-id, dapr-caller-namespace and
// dapr-callee-app-id are set by the sidecar; client-sent copies never reach
// the app (PRODUCT.md difference 2), and dapr-app-id is not delivered.
func testIdentityHeaders(t *testing.T, p invokePair) {
	tests := []struct {
		name   string
		path   string
		header http.Header
		callee string
	}{
		{name: "remote, path form", path: "/v1.0/invoke/app-b/method/id", callee: "app-b"},
		{name: "remote, header form", path: "/id", header: http.Header{"Dapr-App-Id": {"app-b"}}, callee: "app-b"},
		{name: "remote, basic auth form", path: "/id", header: http.Header{"Authorization": {basicAppID("dapr-app-id", "app-b")}}, callee: "app-b"},
		{name: "self, path form", path: "/v1.0/invoke/app-a/method/id", callee: "app-a"},
		{name: "self, header form", path: "/id", header: http.Header{"Dapr-App-Id": {"app-a"}}, callee: "app-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, p.a.url(tt.path), nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			req.Header["Dapr-Caller-App-Id"] = []string{"evil", "app-x"}
			req.Header["Dapr-Caller-Namespace"] = []string{"evil-ns"}
			req.Header["dapr-callee-app-id"] = []string{"evil"} // not canonical: the sidecar must still see it
			resp, b := do(t, req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d: %s", resp.StatusCode, b)
			}
			e := decodeEcho(t, b)
			want := http.Header{
				"Dapr-Caller-App-Id":    {"app-a"},
				"Dapr-Caller-Namespace": {"default"},
				"Dapr-Callee-App-Id":    {tt.callee},
			}
			got := http.Header{}
			for k := range want {
				got[k] = e.Header[k]
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("identity headers the app got (-want +got):\n%s", diff)
			}
			if v, ok := e.Header["Dapr-App-Id"]; ok {
				t.Errorf("app got Dapr-App-Id %q", v)
			}
			if want := map[string]string{"app-a": "a", "app-b": "b"}[tt.callee]; e.Instance != want {
				t.Errorf("served by app %q, want %q", e.Instance, want)
			}
		})
	}
}

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$`)

// parseTraceparent returns the trace id, span id and flags of a version-00
// traceparent, failing the test on anything else.
func parseTraceparent(t *testing.T, what string, vs []string) (trace, span, flags string) {
	t.Helper()
	if len(vs) != 1 {
		t.Fatalf("%s: traceparent %q, want exactly one", what, vs)
	}
	m := traceparentRE.FindStringSubmatch(vs[0])
	if m == nil || m[1] == strings.Repeat("0", 32) || m[2] == strings.Repeat("0", 16) {
		t.Fatalf("%s: invalid traceparent %q", what, vs[0])
	}
	return m[1], m[2], m[3]
}

// testTraceparent: a valid inbound traceparent keeps its trace id and
// flags and gets a new span id; without one a trace is started. The client
// gets the trace context back.
func testTraceparent(t *testing.T, p invokePair) {
	const (
		sentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		sentSpan  = "00f067aa0ba902b7"
	)
	for _, target := range []string{"app-b", "app-a"} {
		t.Run("propagated to "+target, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, p.a.invokeURL(target, "trace"), nil)
			req.Header.Set("Traceparent", "00-"+sentTrace+"-"+sentSpan+"-01")
			resp, b := do(t, req)
			e := decodeEcho(t, b)
			trace, span, flags := parseTraceparent(t, "app", e.Header["Traceparent"])
			if trace != sentTrace || flags != "01" {
				t.Errorf("app got trace %s flags %s, want %s flags 01", trace, flags, sentTrace)
			}
			if span == sentSpan {
				t.Errorf("app got the client's span id %s; each hop needs its own", span)
			}
			if rt, _, _ := parseTraceparent(t, "response", resp.Header["Traceparent"]); rt != sentTrace {
				t.Errorf("response trace id %s, want %s", rt, sentTrace)
			}
		})
	}

	t.Run("created when absent", func(t *testing.T) {
		resp, b := do(t, newRequest(t, http.MethodGet, p.a.invokeURL("app-b", "trace"), nil))
		trace, _, _ := parseTraceparent(t, "app", decodeEcho(t, b).Header["Traceparent"])
		if rt, _, _ := parseTraceparent(t, "response", resp.Header["Traceparent"]); rt != trace {
			t.Errorf("response trace id %s, app's %s: want the same trace", rt, trace)
		}
	})

	t.Run("invalid one is replaced", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, p.a.invokeURL("app-b", "trace"), nil)
		req.Header.Set("Traceparent", "00-"+strings.Repeat("0", 32)+"-"+sentSpan+"-01")
		_, b := do(t, req)
		parseTraceparent(t, "app", decodeEcho(t, b).Header["Traceparent"])
	})
}

// testForwarded: remote calls carry Forwarded / X-Forwarded-For /
// X-Forwarded-Host naming the caller's host; self-invocation carries none
// (contract §1.6, §1.9).
func testForwarded(t *testing.T, p invokePair) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	fwd := "for=" + testHostIP + ";by=" + testHostIP + ";host=" + host
	forwardedKeys := []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}
	pick := func(h http.Header) http.Header {
		out := http.Header{}
		for _, k := range forwardedKeys {
			if v, ok := h[k]; ok {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name   string
		target string
		sent   http.Header
		want   http.Header
	}{
		{name: "remote", target: "app-b", want: http.Header{
			"Forwarded": {fwd}, "X-Forwarded-For": {testHostIP}, "X-Forwarded-Host": {host},
		}},
		{name: "remote behind a proxy", target: "app-b",
			sent: http.Header{"Forwarded": {"for=198.51.100.1"}, "X-Forwarded-For": {"198.51.100.1"}, "X-Forwarded-Host": {"front.example"}},
			want: http.Header{
				"Forwarded": {"for=198.51.100.1, " + fwd}, "X-Forwarded-For": {"198.51.100.1, " + testHostIP}, "X-Forwarded-Host": {host},
			}},
		{name: "self", target: "app-a", want: http.Header{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, p.a.invokeURL(tt.target, "fwd"), nil)
			for k, v := range tt.sent {
				req.Header[k] = v
			}
			_, b := do(t, req)
			e := decodeEcho(t, b)
			if diff := cmp.Diff(tt.want, pick(e.Header)); diff != "" {
				t.Errorf("forwarding headers the app got (-want +got):\n%s", diff)
			}
			if tt.target == "app-a" {
				got := []string{e.Instance, strings.Join(e.Header["Dapr-Caller-App-Id"], ","), strings.Join(e.Header["Dapr-Callee-App-Id"], ",")}
				if diff := cmp.Diff([]string{"a", "app-a", "app-a"}, got); diff != "" {
					t.Errorf("self-invocation: instance, caller, callee (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// testMetadata: /v1.0/metadata reports the sidecar's id, version, app
// channel, ports, and the instances of app-b once it has called it.
func testMetadata(t *testing.T, p invokePair) {
	resp, b := do(t, newRequest(t, http.MethodGet, p.a.invokeURL("app-b", "warm"), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("call to app-b: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, newRequest(t, http.MethodGet, p.a.url("/v1.0/metadata"), nil))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("metadata: %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var md struct {
		ID             string              `json:"id"`
		RuntimeVersion string              `json:"runtimeVersion"`
		AppConnection  map[string]any      `json:"appConnectionProperties"`
		Ports          map[string]any      `json:"ports"`
		Instances      map[string][]string `json:"instances"`
	}
	if err := json.Unmarshal(b, &md); err != nil {
		t.Fatalf("metadata is not JSON: %v: %s", err, b)
	}
	if md.ID != "app-a" || md.RuntimeVersion == "" {
		t.Errorf("id %q, runtimeVersion %q: want app-a and a version", md.ID, md.RuntimeVersion)
	}
	wantConn := map[string]any{"port": float64(p.aPort), "protocol": "http", "channelAddress": "127.0.0.1"}
	gotConn := map[string]any{}
	for k := range wantConn {
		gotConn[k] = md.AppConnection[k]
	}
	if diff := cmp.Diff(wantConn, gotConn); diff != "" {
		t.Errorf("appConnectionProperties (-want +got):\n%s", diff)
	}
	internal, ok := md.Ports["internal"].(float64)
	if !ok || internal <= 0 {
		t.Errorf("ports.internal = %v, want a port; ports: %v", md.Ports["internal"], md.Ports)
	}
	gotPorts := map[string]any{"http": md.Ports["http"], "metrics": md.Ports["metrics"]}
	if diff := cmp.Diff(map[string]any{"http": float64(p.a.http), "metrics": float64(p.a.metrics)}, gotPorts); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}

	// app-b's instance is its sidecar's internal (peer-facing) address.
	bPorts, _ := p.b.metadata(t)["ports"].(map[string]any)
	bInternal, _ := bPorts["internal"].(float64)
	want := []string{"127.0.0.1:" + strconv.Itoa(int(bInternal))}
	if diff := cmp.Diff(want, md.Instances["app-b.default"]); diff != "" {
		t.Errorf("instances[app-b.default] (-want +got):\n%s; all: %v", diff, md.Instances)
	}
}
