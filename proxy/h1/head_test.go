package h1

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// fastHeads are request heads for the fast parser: most it takes, some it
// must leave to http.ReadRequest.
var fastHeads = []struct {
	head string
	fast bool // readFastRequest parses it
}{
	{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
	{"GET /v1.0/invoke/b/method/x?y=1&z=%20 HTTP/1.1\r\nHost: 127.0.0.1:3500\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n", true},
	{"GET /x HTTP/1.1\r\nhost: a\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-A: 1\r\nx-a: 2\r\nX-Empty:\r\nX-Sp:  v  \t\r\n\r\n", true},
	{"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", true},
	{"GET /x HTTP/1.0\r\nHost: a\r\n\r\n", true},
	{"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
	{"DELETE /x HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", true},
	{"GET /x HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9\r\n\r\nGET /next HTTP/1.1\r\n\r\n", true},
	{"GET /x HTTP/1.1\r\n\r\n", true}, // checkRequest refuses it
	// Left to http.ReadRequest.
	{"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
	{"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", false},
	{"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
	{"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"GET /x HTTP/2.0\r\nHost: a\r\n\r\n", false},
	{"GET /x HTTP/1.1\nHost: a\n\n", false},
	{"GET /x HTTP/1.1\r\nHost: a\n\nGET /y HTTP/1.1\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nHost: a\r\n X-Folded: b\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nX Bad: a\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nX-Bad : a\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nX-Nul: a\x00b\r\n\r\n", false},
	{"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"G\x00T /x HTTP/1.1\r\nHost: a\r\n\r\n", false},
	{"GET /x HTTP/1.1\r\nHost: a\r\n", false}, // not whole yet
	{"GARBAGE\r\n\r\n", false},
}

// TestFastRequestMatchesReadRequest checks that the fast parser returns
// what http.ReadRequest returns for the heads it takes, and leaves the
// others alone.
func TestFastRequestMatchesReadRequest(t *testing.T) {
	f := new(fields) // reused from head to head, as a connection does
	for _, tt := range fastHeads {
		got := compareFast(t, tt.head, f)
		if got != tt.fast {
			t.Errorf("readFastRequest(%q) parsed = %v, want %v", tt.head, got, tt.fast)
		}
	}
}

// compareFast parses head with both parsers and fails t when the fast one
// parsed it differently; it reports whether the fast one parsed it. f is
// the connection's reused header (nil: none).
func compareFast(t testing.TB, head string, f *fields) bool {
	t.Helper()
	br := bufio.NewReaderSize(strings.NewReader(head), 4096)
	_, _ = br.Peek(1)
	fast, hosts := readFastRequest(context.Background(), br, 1<<20, f)
	if fast == nil {
		if br.Buffered() != min(len(head), 4096) {
			t.Fatalf("readFastRequest(%q) declined but consumed input", head)
		}
		return false
	}
	if want := countHost([]byte(head)); hosts != want {
		t.Fatalf("readFastRequest(%q) counted %d Host lines, the head has %d", head, hosts, want)
	}
	// The fields the fast parser took pass net/http's checks: skipping
	// them changes no verdict.
	if code, reason := checkRequest(fast, hosts, false); code != 0 && (reason == "invalid header name" || reason == "invalid header value") {
		t.Fatalf("readFastRequest(%q) took a head the field checks refuse: %d %s", head, code, reason)
	}
	restFast, _ := io.ReadAll(br)
	sbr := bufio.NewReader(strings.NewReader(head))
	slow, err := http.ReadRequest(sbr)
	if err != nil {
		t.Fatalf("readFastRequest(%q) parsed what http.ReadRequest refuses: %v", head, err)
	}
	restSlow, _ := io.ReadAll(sbr)
	if string(restFast) != string(restSlow) {
		t.Errorf("after %q: fast leaves %q, http.ReadRequest %q", head, restFast, restSlow)
	}
	if fast.Method != slow.Method || fast.URL.String() != slow.URL.String() || fast.Proto != slow.Proto ||
		fast.ProtoMajor != slow.ProtoMajor || fast.ProtoMinor != slow.ProtoMinor || fast.Host != slow.Host ||
		fast.RequestURI != slow.RequestURI || fast.Close != slow.Close || fast.ContentLength != slow.ContentLength ||
		fast.Body != http.NoBody || slow.Body != http.NoBody || len(fast.TransferEncoding) != 0 || fast.Trailer != nil {
		t.Errorf("%q: fast %s %s %s %d.%d host %q uri %q close %v len %d; ReadRequest %s %s %s %d.%d host %q uri %q close %v len %d",
			head, fast.Method, fast.URL, fast.Proto, fast.ProtoMajor, fast.ProtoMinor, fast.Host, fast.RequestURI, fast.Close, fast.ContentLength,
			slow.Method, slow.URL, slow.Proto, slow.ProtoMajor, slow.ProtoMinor, slow.Host, slow.RequestURI, slow.Close, slow.ContentLength)
	}
	if !reflect.DeepEqual(fast.Header, slow.Header) {
		t.Errorf("%q: fast header %v, ReadRequest %v", head, fast.Header, slow.Header)
	}
	if fast.Context() == nil {
		t.Errorf("%q: no context", head)
	}
	return true
}

// FuzzFastRequest: whatever the bytes, the fast parser either declines or
// agrees with http.ReadRequest.
func FuzzFastRequest(f *testing.F) {
	for _, tt := range fastHeads {
		f.Add(tt.head)
	}
	f.Fuzz(func(t *testing.T, head string) {
		compareFast(t, head, nil)
		// Again into a header a previous request filled: nothing of it
		// may show.
		reused := new(fields)
		before := "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\nX-A: 3\r\nCookie: c\r\n\r\n"
		br := bufio.NewReader(strings.NewReader(before))
		_, _ = br.Peek(1)
		if req, _ := readFastRequest(context.Background(), br, 1<<20, reused); req == nil {
			t.Fatal("declined the first head")
		}
		compareFast(t, head, reused)
	})
}

func BenchmarkReadRequest(b *testing.B) {
	head := "GET /v1.0/invoke/b/method/bench HTTP/1.1\r\nHost: 127.0.0.1:3500\r\nUser-Agent: Go-http-client/1.1\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nDapr-Caller-App-Id: a\r\nDapr-Callee-App-Id: b\r\nX-Forwarded-For: 127.0.0.1\r\nForwarded: for=127.0.0.1;by=127.0.0.1;host=vm\r\nAccept-Encoding: gzip\r\n\r\n"
	r := strings.NewReader(head)
	br := bufio.NewReaderSize(r, 4096)
	ctx := context.Background()
	f := new(fields)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(head)
			br.Reset(r)
			_, _ = br.Peek(1)
			if req, _ := readFastRequest(ctx, br, 1<<20, f); req == nil {
				b.Fatal("declined")
			}
		}
	})
	b.Run("http.ReadRequest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(head)
			br.Reset(r)
			req, err := http.ReadRequest(br)
			if err != nil {
				b.Fatal(err)
			}
			_ = req.WithContext(ctx)
		}
	})
}

// fastResponses are response heads (and bodies) for the fast parser.
var fastResponses = []struct {
	raw  string
	fast bool
}{
	{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true},
	{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sat, 05 Dec 2026 03:00:00 GMT\r\nContent-Length: 0\r\n\r\n", true},
	{"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\nx-a: 1\r\nX-A: 2\r\nConnection: close\r\n\r\nnop", true},
	{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", true},
	{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok", true},
	{"HTTP/1.1 503  Service Unavailable\r\nContent-Length: 1\r\nPragma: no-cache\r\n\r\nx", true},
	{"HTTP/1.1 299\r\nContent-Length: 1\r\n\r\nx", true},
	{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true}, // the body's read fails
	// Left to http.ReadResponse.
	{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false},
	{"HTTP/1.1 200 OK\r\n\r\nuntil close", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false},
	{"HTTP/1.1 204 No Content\r\n\r\n", false},
	{"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false},
	{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false},
	{"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1 200 OK\nContent-Length: 0\n\n", false},
	{"HTTP/1.1 200 OK\r\nX: a\x01\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1 200 OK\r\n Folded: a\r\nContent-Length: 0\r\n\r\n", false},
}

func TestFastResponseMatchesReadResponse(t *testing.T) {
	for _, tt := range fastResponses {
		if got := compareFastResponse(t, tt.raw, http.MethodGet); got != tt.fast {
			t.Errorf("readFastResponse(%q) parsed = %v, want %v", tt.raw, got, tt.fast)
		}
	}
	if compareFastResponse(t, fastResponses[0].raw, http.MethodHead) {
		t.Error("readFastResponse parsed the answer to a HEAD request")
	}
}

// compareFastResponse parses raw with both parsers, reads both bodies, and
// fails t on any difference; it reports whether the fast one parsed it.
func compareFastResponse(t testing.TB, raw, method string) bool {
	t.Helper()
	req, _ := http.NewRequest(method, "http://a/x", nil)
	br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
	_, _ = br.Peek(1)
	fast := readFastResponse(br, req, 1<<20, new(fixedBody))
	if fast == nil {
		if br.Buffered() != min(len(raw), 4096) {
			t.Fatalf("readFastResponse(%q) declined but consumed input", raw)
		}
		return false
	}
	slow, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), req)
	if err != nil {
		t.Fatalf("readFastResponse(%q) parsed what http.ReadResponse refuses: %v", raw, err)
	}
	fb, ferr := io.ReadAll(fast.Body)
	sb, serr := io.ReadAll(slow.Body)
	if string(fb) != string(sb) || (ferr == nil) != (serr == nil) {
		t.Errorf("%q: fast body %q, %v; ReadResponse %q, %v", raw, fb, ferr, sb, serr)
	}
	if fast.Status != slow.Status || fast.StatusCode != slow.StatusCode || fast.Proto != slow.Proto ||
		fast.ProtoMajor != slow.ProtoMajor || fast.ProtoMinor != slow.ProtoMinor || fast.ContentLength != slow.ContentLength ||
		fast.Close != slow.Close || fast.Request != slow.Request || len(slow.TransferEncoding) != 0 || slow.Trailer != nil {
		t.Errorf("%q: fast %q %d %s %d.%d len %d close %v; ReadResponse %q %d %s %d.%d len %d close %v", raw,
			fast.Status, fast.StatusCode, fast.Proto, fast.ProtoMajor, fast.ProtoMinor, fast.ContentLength, fast.Close,
			slow.Status, slow.StatusCode, slow.Proto, slow.ProtoMajor, slow.ProtoMinor, slow.ContentLength, slow.Close)
	}
	if (fast.Body == http.NoBody) != (slow.Body == http.NoBody) {
		t.Errorf("%q: fast body NoBody %v, ReadResponse's %v", raw, fast.Body == http.NoBody, slow.Body == http.NoBody)
	}
	if !reflect.DeepEqual(fast.Header, slow.Header) {
		t.Errorf("%q: fast header %v, ReadResponse %v", raw, fast.Header, slow.Header)
	}
	return true
}

// FuzzFastResponse: whatever the bytes, the fast parser either declines or
// agrees with http.ReadResponse, body included.
func FuzzFastResponse(f *testing.F) {
	for _, tt := range fastResponses {
		f.Add(tt.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		compareFastResponse(t, raw, http.MethodGet)
	})
}
