package discovery

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2Behaviour is how a misbehaving HTTP/2 server answers a request stream.
type h2Behaviour int

const (
	// refuseStream resets every stream with REFUSED_STREAM on its HEADERS.
	refuseStream h2Behaviour = iota
	// goAwayFirst sends GOAWAY(last-stream-id 0) on the first HEADERS.
	goAwayFirst
	// goAwayFirstError is goAwayFirst with ENHANCE_YOUR_CALM instead of
	// NO_ERROR.
	goAwayFirstError
	// readThenReset reads the whole request, then resets the stream with
	// INTERNAL_ERROR: the request may have been processed.
	readThenReset
	// readThenGoAway reads the whole request, then sends GOAWAY with a
	// last-stream-id that covers it and closes the connection.
	readThenGoAway
	// resetProtocol resets every stream with PROTOCOL_ERROR on its HEADERS,
	// a code net/http itself retries but that does not promise the request
	// was not processed.
	resetProtocol
	// refuseAfterData refuses a stream with REFUSED_STREAM once
	// refuseAfter bytes of its body arrived (or it ended).
	refuseAfterData
)

// badH2 is a real HTTP/2 server (h2c, prior knowledge) on loopback, written
// with x/net/http2's Framer so it can break the protocol's promises the
// ways a real peer may.
type badH2 struct {
	addr        string
	refuseAfter int
	headers     atomic.Int32 // request HEADERS frames received
	mu          sync.Mutex
	body        bytes.Buffer  // DATA payload received
	holdRefusal chan struct{} // refuseAfterData waits for it to close, if set (under mu)
}

func (s *badH2) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.body.String()
}

func startBadH2(t *testing.T, b h2Behaviour) *badH2 {
	return startBadH2After(t, b, 0)
}

func startBadH2After(t *testing.T, b h2Behaviour, refuseAfter int) *badH2 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &badH2{addr: ln.Addr().String(), refuseAfter: refuseAfter}
	var wg sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			wg.Go(func() { s.serve(c, b) })
		}
	})
	return s
}

func (s *badH2) serve(c net.Conn, b h2Behaviour) {
	defer c.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		return
	}
	streamBytes := map[uint32]int{}
	reset := map[uint32]bool{}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = fr.WritePing(true, f.Data)
			}
		case *http2.HeadersFrame:
			s.headers.Add(1)
			id := f.StreamID
			switch b {
			case refuseStream:
				_ = fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
			case goAwayFirst:
				_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
			case goAwayFirstError:
				_ = fr.WriteGoAway(0, http2.ErrCodeEnhanceYourCalm, nil)
			case resetProtocol:
				_ = fr.WriteRSTStream(id, http2.ErrCodeProtocol)
			}
			if f.StreamEnded() {
				s.ended(c, fr, id, b)
			}
		case *http2.DataFrame:
			s.mu.Lock()
			s.body.Write(f.Data())
			s.mu.Unlock()
			if n := len(f.Data()); n > 0 {
				// Keep the client's windows open.
				_ = fr.WriteWindowUpdate(0, uint32(n))
				if !f.StreamEnded() {
					_ = fr.WriteWindowUpdate(f.StreamID, uint32(n))
				}
			}
			id := f.StreamID
			streamBytes[id] += len(f.Data())
			if b == refuseAfterData && !reset[id] && (streamBytes[id] >= s.refuseAfter || f.StreamEnded()) {
				reset[id] = true
				s.mu.Lock()
				hold := s.holdRefusal
				s.mu.Unlock()
				if hold != nil {
					select {
					case <-hold:
					case <-time.After(10 * time.Second): // a bound on a hang only
					}
				}
				_ = fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
			}
			if f.StreamEnded() {
				s.ended(c, fr, id, b)
			}
		}
	}
}

// ended is called when the whole request of stream id has arrived.
func (s *badH2) ended(c net.Conn, fr *http2.Framer, id uint32, b h2Behaviour) {
	switch b {
	case readThenReset:
		_ = fr.WriteRSTStream(id, http2.ErrCodeInternal)
	case readThenGoAway:
		_ = fr.WriteGoAway(id, http2.ErrCodeNo, nil)
		c.Close()
	}
}

// startGoodH2 is a healthy h2c instance that records the bodies it got.
func startGoodH2(t *testing.T) (addr string, bodies func() []string) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
		w.Header().Set("X-Proto", r.Proto)
	}))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// peerLikeTransport is configured as the peer transport (proxy/transport.go
// newPeerTransport): h2c with prior knowledge.
func peerLikeTransport(t *testing.T) *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols:           &p,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		DisableCompression:  true,
		IdleConnTimeout:     3 * time.Minute,
		MaxIdleConnsPerHost: 16,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 10 * time.Second,
			PingTimeout:     5 * time.Second,
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// h2Picker picks bad first, then good, over a peer-like transport.
func h2Picker(t *testing.T, bad, good string) http.RoundTripper {
	src := staticSource{"orders.default": {{Address: bad, Hostname: "x"}, {Address: good, Hostname: "x"}}}
	res := NewResolver(src, slog.New(slog.DiscardHandler))
	return Pick(res, prefer(bad), nil)(peerLikeTransport(t))
}

// onlyReader hides a reader's other methods so net/http cannot learn its
// length: the request goes out chunked (no content-length, DATA until
// END_STREAM).
type onlyReader struct{ io.Reader }

// payload is large enough to take several DATA frames, and smaller than
// maxUnprocessedReplay.
var payload = strings.Repeat("0123456789abcdef", 3000) + "end"

// bodyKind is how a request carries its body.
type bodyKind string

const (
	withGetBody bodyKind = "fixed-length with GetBody" // as http.NewRequest makes it
	fixedLength bodyKind = "fixed-length"              // as a sidecar receives it
	chunked     bodyKind = "chunked"
)

var bodyKinds = []bodyKind{withGetBody, fixedLength, chunked}

func newPost(t *testing.T, kind bodyKind, body string) *http.Request {
	t.Helper()
	var r io.Reader = strings.NewReader(body)
	if kind == chunked {
		r = onlyReader{r}
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://orders.default/orders", r)
	if err != nil {
		t.Fatal(err)
	}
	switch kind {
	case fixedLength:
		req.GetBody = nil
	case chunked:
		if req.ContentLength != 0 || req.GetBody != nil {
			t.Fatalf("ContentLength = %d, GetBody set: want a chunked body", req.ContentLength)
		}
	}
	return req
}

// landsOnGood sends a POST of body through a picker that tries bad first
// and checks it reached good, once, byte-exact, in one call.
func landsOnGood(t *testing.T, bad *badH2, kind bodyKind, body string) {
	t.Helper()
	good, bodies := startGoodH2(t)
	rt := h2Picker(t, bad.addr, good)

	resp, err := rt.RoundTrip(newPost(t, kind, body))
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Proto") != "HTTP/2.0" {
		t.Errorf("status %d over %q, want 200 over HTTP/2.0", resp.StatusCode, resp.Header.Get("X-Proto"))
	}
	if n := bad.headers.Load(); n != 1 {
		t.Errorf("misbehaving instance got %d requests, want 1 (tried first, not retried there)", n)
	}
	got := bodies()
	if len(got) != 1 {
		t.Fatalf("healthy instance got %d requests, want 1", len(got))
	}
	if got[0] != body {
		t.Errorf("healthy instance got %d bytes, want the %d-byte body byte-exact", len(got[0]), len(body))
	}
}

// TestPickRetriesUnprocessedH2StreamOnAnotherInstance: an HTTP/2 stream the
// server refused (REFUSED_STREAM) or dropped with a GOAWAY below its id was
// not processed (RFC 9113 §8.7), so a POST goes at once to another instance
// with its body intact, fixed-length or chunked.
func TestPickRetriesUnprocessedH2StreamOnAnotherInstance(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    h2Behaviour
	}{
		{"REFUSED_STREAM", refuseStream},
		{"GOAWAY below the stream", goAwayFirst},
		{"GOAWAY with an error code below the stream", goAwayFirstError},
	} {
		for _, kind := range bodyKinds {
			t.Run(tc.name+"/"+string(kind), func(t *testing.T) {
				landsOnGood(t, startBadH2(t, tc.b), kind, payload)
			})
		}
	}
}

// TestPickReplaysH2BodyAlreadySentToARefusingInstance: the refusal comes
// after the first instance received 32 KiB of the body; the rest is still
// unread, and the other instance gets all of it.
func TestPickReplaysH2BodyAlreadySentToARefusingInstance(t *testing.T) {
	for _, kind := range bodyKinds {
		t.Run(string(kind), func(t *testing.T) {
			bad := startBadH2After(t, refuseAfterData, 32<<10)
			landsOnGood(t, bad, kind, payload)
			if n := len(bad.received()); n < 32<<10 {
				t.Errorf("refusing instance got %d body bytes before refusing, want at least 32 KiB", n)
			}
		})
	}
}

// TestPickDoesNotReplayH2BodyBeyondBound: a body the transport had read
// more than maxUnprocessedReplay of when the stream was refused is not kept,
// so the call fails; with GetBody it is replayed from there.
func TestPickDoesNotReplayH2BodyBeyondBound(t *testing.T) {
	big := strings.Repeat("x", 2*maxUnprocessedReplay)
	for _, kind := range []bodyKind{fixedLength, chunked} {
		t.Run(string(kind), func(t *testing.T) {
			bad := startBadH2After(t, refuseAfterData, maxUnprocessedReplay+1)
			good, bodies := startGoodH2(t)
			rt := h2Picker(t, bad.addr, good)
			resp, err := rt.RoundTrip(newPost(t, kind, big))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("RoundTrip succeeded, want the refusal: %d bytes were read, more than kept", maxUnprocessedReplay+1)
			}
			if !unprocessed(err) {
				t.Errorf("error %v, want the refused stream's", err)
			}
			if got := bodies(); len(got) != 0 {
				t.Errorf("other instance got %d requests, want none", len(got))
			}
		})
	}
	t.Run(string(withGetBody), func(t *testing.T) {
		landsOnGood(t, startBadH2After(t, refuseAfterData, maxUnprocessedReplay+1), withGetBody, big)
	})
}

// TestPickDoesNotRetryPossiblyProcessedH2Post: a POST the server read and
// then reset with INTERNAL_ERROR, answered with a GOAWAY whose
// last-stream-id covers it, or reset with PROTOCOL_ERROR (which net/http
// itself would resend) may have been processed: the error is returned and
// no other instance sees the request.
func TestPickDoesNotRetryPossiblyProcessedH2Post(t *testing.T) {
	for _, tc := range []struct {
		name      string
		b         h2Behaviour
		wholeBody bool // the instance reads the whole body first
	}{
		{"INTERNAL_ERROR after the request", readThenReset, true},
		{"GOAWAY covering the stream", readThenGoAway, true},
		{"PROTOCOL_ERROR", resetProtocol, false},
	} {
		for _, kind := range bodyKinds {
			t.Run(tc.name+"/"+string(kind), func(t *testing.T) {
				bad := startBadH2(t, tc.b)
				good, bodies := startGoodH2(t)
				rt := h2Picker(t, bad.addr, good)

				resp, err := rt.RoundTrip(newPost(t, kind, payload))
				if err == nil {
					resp.Body.Close()
					t.Fatalf("RoundTrip succeeded with status %d, want the error", resp.StatusCode)
				}
				if unprocessed(err) || errors.Is(err, ErrUnreachable) {
					t.Errorf("error %v reads as never processed, want the stream's error", err)
				}
				if n := bad.headers.Load(); n != 1 {
					t.Errorf("instance got %d requests, want 1", n)
				}
				if got := bad.received(); tc.wholeBody && got != payload {
					t.Errorf("instance got %d body bytes, want the whole %d (the request was sent)", len(got), len(payload))
				}
				if got := bodies(); len(got) != 0 {
					t.Errorf("other instance got %d requests, want none: a POST that may have been processed is not retried", len(got))
				}
			})
		}
	}
}

// TestPickGivesUpReplayWhenBodyReadBlocks: a chunked body whose sender
// waits (a stream that sends more only after an answer) leaves the
// transport's Read blocked when the stream is refused. The picker closes
// the body rather than wait for it, so the call ends with the refusal
// instead of hanging, and is not replayed: part of the body is gone.
func TestPickGivesUpReplayWhenBodyReadBlocks(t *testing.T) {
	bad := startBadH2After(t, refuseAfterData, 1)
	good, bodies := startGoodH2(t)
	rt := h2Picker(t, bad.addr, good)

	// The refusal is held until the transport's next Read of the body has
	// started and blocks: that is the case under test (a refusal while no
	// Read is in progress finds the body replayable, and the call rightly
	// goes to the other instance).
	body := &stallingBody{first: []byte("first part"), reading: make(chan struct{}), release: make(chan struct{})}
	bad.mu.Lock()
	bad.holdRefusal = body.reading
	bad.mu.Unlock()
	t.Cleanup(body.end)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a bound on a hang, not a timing check
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://orders.default/stream", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	resp, err := rt.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("RoundTrip succeeded, want the refusal")
	}
	if ctx.Err() != nil {
		t.Fatalf("RoundTrip hung until the caller's deadline: %v", err)
	}
	if !unprocessed(err) {
		t.Errorf("error %v, want the refused stream's", err)
	}
	if got := bad.received(); got != "first part" {
		t.Errorf("refusing instance got %q, want the first part", got)
	}
	if got := bodies(); len(got) != 0 {
		t.Errorf("other instance got %d requests, want none", len(got))
	}
}

// stallingBody is a request body whose sender sends more only after an
// answer: it gives its first part, then its next Read closes reading and
// blocks until the body is closed or the test ends.
type stallingBody struct {
	first            []byte
	sent             bool
	reading, release chan struct{}
	readingOnce      sync.Once
	releaseOnce      sync.Once
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, b.first), nil
	}
	b.readingOnce.Do(func() { close(b.reading) })
	<-b.release
	return 0, io.ErrClosedPipe
}

func (b *stallingBody) Close() error {
	b.end()
	return nil
}

func (b *stallingBody) end() { b.releaseOnce.Do(func() { close(b.release) }) }
