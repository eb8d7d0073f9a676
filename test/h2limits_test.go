package test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The HTTP/2 limits of every HTTP/2 listener of a sidecar, as
// proxy/apiserver.go sets them and docs/http2.md ("Limits") explains.
const (
	h2MaxStreams      = 250
	h2APIHeaderList   = 4096 + 320       // --read-buffer-size 4Ki, plus net/http's 10×32 for HPACK's per-field cost
	h2PeerHeaderList  = 64<<10 + 320     // the peer port's 64 KiB, the same way
	h2ClientWindow    = 1 << 30          // what the raw client lets the server send, so it never sends WINDOW_UPDATE
	h2GuardConn       = 60 * time.Second // a raw connection's deadline: a hang guard
	h2ContinuationMax = 64 << 20         // more than loopback socket buffers hold, so a server that reads it all shows
	h2RapidResetPairs = 10_000           // HEADERS + RST_STREAM: 20,000 frames
)

// h2Port is one HTTP/2 listener of the sidecar under test and the calls
// the tests make on it.
type h2Port struct {
	name       string
	port       int
	authority  string    // :authority of calls that reach the app
	ping       string    // :path of a call the app answers 200
	slow       string    // :path of a call the app holds for a minute
	local      [2]string // :authority and :path of a call the sidecar answers itself, no upstream
	headerList uint32    // the SETTINGS_MAX_HEADER_LIST_SIZE it advertises
}

// h2Ports starts an app and its sidecar with --enable-mtls=false, so that
// the peer port speaks h2c, and returns the sidecar and its two HTTP/2
// listeners: the API port (h2c with prior knowledge beside HTTP/1.1) and
// the peer port.
func h2Ports(t *testing.T) (*sidecar, []h2Port) {
	t.Helper()
	m := newMesh(t)
	appPort, _ := m.app("h2lim")
	s := m.sidecar("h2lim", appPort, "--enable-mtls=false")
	api := "127.0.0.1:" + strconv.Itoa(s.http)
	return s, []h2Port{{
		name: "API port", port: s.http, authority: api,
		ping:       "/v1.0/invoke/h2lim/method/ping",
		slow:       "/v1.0/invoke/h2lim/method/slow?ms=60000",
		local:      [2]string{api, "/v1.0/healthz"}, // 204
		headerList: h2APIHeaderList,
	}, {
		name: "peer port", port: s.internalPort(t), authority: "h2lim.default",
		ping:       "/ping",
		slow:       "/slow?ms=60000",
		local:      [2]string{"elsewhere.default", "/ping"}, // 421: another app's call
		headerList: h2PeerHeaderList,
	}}
}

// call makes one call that reaches the app with Go's HTTP/2 client, on a
// connection of its own; an error unless the app's 200 came back over
// HTTP/2.
func (p h2Port) call(cl *http.Client) error {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(p.port)+p.ping, nil)
	if err != nil {
		return err
	}
	req.Host = p.authority
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		return fmt.Errorf("%s %d: %s", resp.Proto, resp.StatusCode, b)
	}
	return nil
}

// mustCall is call for a test that needs the call to succeed.
func (p h2Port) mustCall(t *testing.T, cl *http.Client) {
	t.Helper()
	if err := p.call(cl); err != nil {
		t.Fatalf("a call on another connection: %v", err)
	}
}

// h2cClient is Go's HTTP/2 client with prior knowledge; its connections
// are closed when the test ends.
func h2cClient(t *testing.T) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h2Client is a raw HTTP/2 client on one TCP connection: it writes frames
// as a test says, valid or not, and reads what the server sends. Writes and
// reads may run on two goroutines, one each, as golang.org/x/net/http2's
// own Transport uses a Framer.
type h2Client struct {
	c        net.Conn
	fr       *http2.Framer
	settings map[http2.SettingID]uint32 // the server's first SETTINGS
	next     uint32                     // the next stream ID to open
}

// dialH2 opens a connection, exchanges the prefaces and SETTINGS, and
// gives the server a receive window of h2ClientWindow so the client never
// has to send WINDOW_UPDATE. guard is the connection's deadline: a hang
// guard, not a timing assertion. The connection is closed when the test
// ends.
func dialH2(t *testing.T, port int, guard time.Duration) *h2Client {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(guard)); err != nil {
		t.Fatal(err)
	}
	h := &h2Client{c: c, fr: http2.NewFramer(c, bufio.NewReader(c)), settings: map[http2.SettingID]uint32{}, next: 1}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2ClientWindow}); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteWindowUpdate(0, h2ClientWindow-65535); err != nil {
		t.Fatal(err)
	}
	// RFC 9113 §3.4: the server's preface is a SETTINGS frame.
	f, err := h.fr.ReadFrame()
	if err != nil {
		t.Fatalf("server preface: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("server preface is %v, want SETTINGS", f)
	}
	_ = sf.ForeachSetting(func(s http2.Setting) error {
		h.settings[s.ID] = s.Val
		return nil
	})
	if err := h.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return h
}

// request returns the fields of a GET of path at authority, then extra.
func request(authority, path string, extra ...hpack.HeaderField) []hpack.HeaderField {
	return append([]hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: authority}, {Name: ":path", Value: path},
	}, extra...)
}

// headerBlockOf HPACK-encodes fields as literals never indexed, so the
// server's dynamic table never changes and a refused block leaves no
// state behind to get out of step with.
func headerBlockOf(fields []hpack.HeaderField) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, f := range fields {
		f.Sensitive = true
		_ = enc.WriteField(f)
	}
	return b.Bytes()
}

// listSize is the size of fields in SETTINGS_MAX_HEADER_LIST_SIZE's units
// (RFC 9113 §6.5.2): names and values plus 32 bytes each.
func listSize(fields []hpack.HeaderField) uint32 {
	var n uint32
	for _, f := range fields {
		n += f.Size()
	}
	return n
}

// open sends a request on a new stream, END_STREAM and END_HEADERS set,
// and returns its ID.
func (h *h2Client) open(t *testing.T, fields []hpack.HeaderField) uint32 {
	t.Helper()
	id := h.next
	h.next += 2
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: headerBlockOf(fields), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatalf("HEADERS of stream %d: %v", id, err)
	}
	return id
}

// streamEnd is how the server ended a stream the test opened, or the
// connection under it.
type streamEnd struct {
	status int // the response's :status
	reset  bool
	goAway bool
	code   http2.ErrCode // of the RST_STREAM or GOAWAY
	err    error         // the connection failed
}

func (e streamEnd) String() string {
	switch {
	case e.status != 0:
		return "response " + strconv.Itoa(e.status)
	case e.reset:
		return "RST_STREAM " + e.code.String()
	case e.goAway:
		return "GOAWAY " + e.code.String()
	}
	return fmt.Sprintf("connection failed: %v", e.err)
}

// wait reads frames until the server answers stream id (its final
// response head), resets it, or ends the connection; frames of other
// streams are skipped.
func (h *h2Client) wait(id uint32) streamEnd {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return streamEnd{err: err}
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			st, _ := strconv.Atoi(f.PseudoValue("status"))
			if f.StreamID == id && st >= 200 {
				return streamEnd{status: st}
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return streamEnd{reset: true, code: f.ErrCode}
			}
		case *http2.GoAwayFrame:
			return streamEnd{goAway: true, code: f.ErrCode}
		}
	}
}

// closedByServer reports whether err ends a connection the server closed
// (or reset), as opposed to the hang guard's deadline.
func closedByServer(err error) bool {
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// writeAll writes chunk to c again and again until total bytes or the
// first error, and returns the bytes written.
func writeAll(c net.Conn, chunk []byte, total int) (int, error) {
	n := 0
	for n < total {
		w, err := c.Write(chunk)
		n += w
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestH2LimitsAdvertised covers issue 11 point 4's last bullet: every
// HTTP/2 listener of a sidecar advertises the limits proxy/apiserver.go
// sets, rather than whatever net/http's defaults are.
func TestH2LimitsAdvertised(t *testing.T) {
	_, ports := h2Ports(t)
	for _, p := range ports {
		t.Run(p.name, func(t *testing.T) {
			h := dialH2(t, p.port, 10*time.Second)
			want := map[http2.SettingID]uint32{
				http2.SettingMaxConcurrentStreams: h2MaxStreams,
				http2.SettingMaxHeaderListSize:    p.headerList,
				http2.SettingHeaderTableSize:      4096,
				http2.SettingMaxFrameSize:         1 << 20,
				http2.SettingInitialWindowSize:    1 << 20,
			}
			got := map[http2.SettingID]uint32{}
			for id := range want {
				if v, ok := h.settings[id]; ok {
					got[id] = v
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("SETTINGS (-want +got):\n%s", diff)
			}
		})
	}
}

// TestH2ConcurrentStreamsLimit covers issue 11 point 4's last bullet: a
// client that opens more than SETTINGS_MAX_CONCURRENT_STREAMS streams and
// finishes none gets the one over the limit refused (RFC 9113 §5.1.2:
// PROTOCOL_ERROR or REFUSED_STREAM), while its connection and everyone
// else's keep working.
func TestH2ConcurrentStreamsLimit(t *testing.T) {
	_, ports := h2Ports(t)
	for _, p := range ports {
		t.Run(p.name, func(t *testing.T) {
			cl := h2cClient(t)
			h := dialH2(t, p.port, h2GuardConn)
			first := h.open(t, request(p.authority, p.slow))
			for range h2MaxStreams - 1 {
				h.open(t, request(p.authority, p.slow))
			}
			over := h.open(t, request(p.authority, p.ping))
			if got := h.wait(over); !got.reset || (got.code != http2.ErrCodeProtocol && got.code != http2.ErrCodeRefusedStream) {
				t.Fatalf("stream %d, over the limit of %d: %v, want RST_STREAM PROTOCOL_ERROR or REFUSED_STREAM", h2MaxStreams+1, h2MaxStreams, got)
			}
			p.mustCall(t, cl)
			// One stream ends: the connection takes a new one.
			if err := h.fr.WriteRSTStream(first, http2.ErrCodeCancel); err != nil {
				t.Fatal(err)
			}
			id := h.open(t, request(p.authority, p.ping))
			if got := h.wait(id); got.status != http.StatusOK {
				t.Fatalf("a stream after one of %d ended: %v, want response 200", h2MaxStreams, got)
			}
		})
	}
}

// TestH2HeaderListLimit covers issue 11 point 4's last bullet: a header
// list of exactly SETTINGS_MAX_HEADER_LIST_SIZE is served, one byte more
// gets 431 on a connection that stays usable, and a block far beyond it
// ends the connection before it is decoded (net/http stops at twice the
// limit) while other connections keep working.
func TestH2HeaderListLimit(t *testing.T) {
	_, ports := h2Ports(t)
	for _, p := range ports {
		t.Run(p.name, func(t *testing.T) {
			cl := h2cClient(t)
			h := dialH2(t, p.port, h2GuardConn)
			limit := h.settings[http2.SettingMaxHeaderListSize]
			if limit != p.headerList {
				t.Fatalf("SETTINGS_MAX_HEADER_LIST_SIZE = %d, want %d", limit, p.headerList)
			}
			padded := func(size uint32) []hpack.HeaderField {
				pad := hpack.HeaderField{Name: "x-pad"}
				n := size - listSize(request(p.authority, p.ping)) - pad.Size()
				pad.Value = strings.Repeat("p", int(n))
				return request(p.authority, p.ping, pad)
			}
			for _, tc := range []struct {
				size uint32
				want int
			}{{limit, http.StatusOK}, {limit + 1, http.StatusRequestHeaderFieldsTooLarge}, {0, http.StatusOK}} {
				fields := request(p.authority, p.ping)
				if tc.size != 0 {
					fields = padded(tc.size)
				}
				id := h.open(t, fields)
				if got := h.wait(id); got.status != tc.want {
					t.Fatalf("header list of %d bytes (limit %d): %v, want response %d", listSize(fields), limit, got, tc.want)
				}
			}
			far := request(p.authority, p.ping, hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("p", int(4*limit))})
			id := h.open(t, far)
			if got := h.wait(id); !got.goAway && !closedByServer(got.err) {
				t.Fatalf("header block of %d bytes (limit %d): %v, want the connection ended", len(headerBlockOf(far)), limit, got)
			} else {
				t.Logf("header block of %d bytes (limit %d): %v", len(headerBlockOf(far)), limit, got)
			}
			p.mustCall(t, cl)
		})
	}
}

// TestH2ContinuationFlood covers issue 11 point 4's last bullet: a HEADERS
// frame without END_HEADERS followed by an endless run of small
// CONTINUATION frames (CVE-2024-27316's shape) gets its connection closed
// soon after the header list limit, not after the server has read, let
// alone kept, all of it: the client cannot write the 64 MiB flood, more
// than loopback socket buffers hold, before its writes fail. Other
// connections keep working.
func TestH2ContinuationFlood(t *testing.T) {
	s, ports := h2Ports(t)
	// One field per frame, each far below the limit: only their sum is over.
	var chunk bytes.Buffer
	frag := headerBlockOf([]hpack.HeaderField{{Name: "x-flood", Value: strings.Repeat("f", 100)}})
	cf := http2.NewFramer(&chunk, nil)
	for chunk.Len() < 64<<10 {
		if err := cf.WriteContinuation(1, false, frag); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range ports {
		t.Run(p.name, func(t *testing.T) {
			cl := h2cClient(t)
			rss := s.metric(t, "process_resident_memory_bytes")
			h := dialH2(t, p.port, h2GuardConn)
			if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headerBlockOf(request(p.authority, p.ping)), EndStream: true}); err != nil {
				t.Fatal(err)
			}
			var end streamEnd
			var wg sync.WaitGroup
			wg.Go(func() { end = h.wait(1) })
			written, err := writeAll(h.c, chunk.Bytes(), h2ContinuationMax)
			if err == nil {
				h.c.Close() // ends the reader, which has nothing more coming
			}
			wg.Wait()
			t.Logf("wrote %d KiB of CONTINUATION (%d frames) before %v; the server: %v; sidecar RSS %.1f → %.1f MiB",
				written>>10, written/(9+len(frag)), err, end, rss/(1<<20), s.metric(t, "process_resident_memory_bytes")/(1<<20))
			if !closedByServer(err) {
				t.Fatalf("the server read the whole %d MiB flood (write error: %v)", h2ContinuationMax>>20, err)
			}
			if end.status != 0 || end.reset || (!end.goAway && !closedByServer(end.err)) {
				t.Errorf("the flooded stream ended in %v, want GOAWAY or the connection closed", end)
			}
			p.mustCall(t, cl)
		})
	}
}

// TestH2RapidReset covers issue 11 point 4's last bullet: a client that
// opens streams and resets them at once (CVE-2023-44487), 10,000 of them
// in 20,000 frames, is held back or closed by the server. net/http runs at
// most SETTINGS_MAX_CONCURRENT_STREAMS handlers per connection, drops
// queued requests whose stream was reset before their handler started,
// and sends GOAWAY ENHANCE_YOUR_CALM when more than four times that many
// wait; the sidecar's handlers end as soon as their stream is reset. So
// the sidecar's goroutines grow by no more than twice the limit (sampled
// from /metrics throughout) and come back to where they were, and a normal
// client's calls on another connection succeed before, during and after
// the flood.
func TestH2RapidReset(t *testing.T) {
	s, ports := h2Ports(t)
	for _, p := range ports {
		t.Run(p.name, func(t *testing.T) {
			// The flood, ready to write: a request the sidecar answers by
			// itself, so no upstream connection is made per stream, then
			// its RST_STREAM.
			var flood bytes.Buffer
			ff := http2.NewFramer(&flood, nil)
			block := headerBlockOf(request(p.local[0], p.local[1]))
			for i := range uint32(h2RapidResetPairs) {
				id := 2*i + 1
				if err := ff.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
				if err := ff.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
					t.Fatal(err)
				}
			}

			cl := h2cClient(t)
			p.mustCall(t, cl) // the normal client's connection is open before the flood
			base := s.metric(t, "go_goroutines")
			stop := make(chan struct{})
			var ok, failed int
			var firstErr error
			peak, samples := base, 0
			var sampleErr error
			var bg sync.WaitGroup
			bg.Go(func() { // calls one after another until the flood is over
				for {
					if err := p.call(cl); err != nil {
						failed++
						if firstErr == nil {
							firstErr = err
						}
					} else {
						ok++
					}
					select {
					case <-stop:
						return
					default:
					}
				}
			})
			bg.Go(func() { // the sidecar's goroutines, as often as /metrics answers
				for {
					g, err := gauge(s.metrics, "go_goroutines")
					if err != nil {
						sampleErr = err
						return
					}
					peak, samples = max(peak, g), samples+1
					select {
					case <-stop:
						return
					default:
					}
				}
			})

			h := dialH2(t, p.port, h2GuardConn)
			h.next = 2*h2RapidResetPairs + 1
			probe := h.next // a normal request after the flood, if the connection still stands
			var end streamEnd
			var rd sync.WaitGroup
			rd.Go(func() { end = h.wait(probe) })
			written := 0
			var werr error
			for b := flood.Bytes(); len(b) > 0 && werr == nil; {
				var n int
				n, werr = h.c.Write(b[:min(len(b), 64<<10)])
				written += n
				b = b[n:]
			}
			if werr == nil {
				h.open(t, request(p.authority, p.ping))
			}
			rd.Wait()
			close(stop)
			bg.Wait()
			h.c.Close()

			t.Logf("wrote %d of %d bytes of the flood (write error: %v); the flooding connection: %v; "+
				"normal calls meanwhile: %d ok, %d failed; goroutines: %v before, %v at most in %d samples",
				written, flood.Len(), werr, end, ok, failed, base, peak, samples)
			switch {
			case end.goAway && end.code == http2.ErrCodeEnhanceYourCalm:
				// net/http's defence: the connection is closed.
			case end.status == http.StatusOK:
				// Held back: its handlers ran at most h2MaxStreams at a time, and the connection still serves.
			case !end.goAway && closedByServer(end.err):
				// Closed, its GOAWAY lost to the reset of a connection with unread frames.
			default:
				t.Errorf("the flooding connection: %v, want GOAWAY ENHANCE_YOUR_CALM, the connection closed, or the probe's response 200", end)
			}
			if failed > 0 {
				t.Errorf("normal calls on another connection during the flood: %d ok, %d failed (first: %v)", ok, failed, firstErr)
			}
			if sampleErr != nil {
				t.Errorf("scrape go_goroutines: %v", sampleErr)
			}
			// The bound is in the stream limit, not in the 10,000 streams
			// sent: the handlers (at most h2MaxStreams), net/http's own
			// goroutines beside them (a finished handler still reporting,
			// the connection's reader and writer), the normal client's call.
			if limit := base + 2*h2MaxStreams; peak > limit {
				t.Errorf("the sidecar ran %v goroutines during the flood, more than %v (%v before, plus twice the %d-stream limit)", peak, limit, base, h2MaxStreams)
			}
			waitFor(t, 10*time.Second, "goroutines back to where they were", func() bool {
				g, err := gauge(s.metrics, "go_goroutines")
				return err == nil && g <= base+10
			})
			p.mustCall(t, cl)
		})
	}
}

// gauge scrapes an unlabelled metric from a sidecar's metrics port. Unlike
// sidecar.metric it reports errors instead of failing the test, so any
// goroutine may call it.
func gauge(port int, name string) (float64, error) {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}
