package h1

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// maxFastHeaders is the most header lines readFastRequest takes; a head
// with more goes to http.ReadRequest.
const maxFastHeaders = 64

// readFastRequest parses, without copying it line by line, a request head
// that is already whole in br's buffer, for the requests most calls are:
// origin-form target, HTTP/1.1 or HTTP/1.0, CRLF line ends, and no body
// (neither Content-Length nor Transfer-Encoding). The head becomes one
// string; the header keys and values are pieces of it, so a head costs a
// handful of allocations where textproto's reader makes one or two per
// line. Anything else, including whatever net/http would refuse, returns
// nil and leaves br as it was, for http.ReadRequest to parse (or refuse)
// as net/http's server does. What it returns is what http.ReadRequest
// returns for the same bytes; TestFastRequestMatchesReadRequest and
// FuzzFastRequest compare the two. hosts is the number of Host lines (0
// or 1); the header names and values are valid (parseFields), so
// checkRequest need not look at them again.
//
// With f, the request's header is f's, reused (parseFields): the caller
// must be done with the previous request's.
func readFastRequest(ctx context.Context, br *bufio.Reader, maxHeader int64, f *fields) (req *http.Request, hosts int) {
	buf, _ := br.Peek(br.Buffered())
	end := headEnd(buf)
	if end < 0 || int64(end) > maxHeader {
		return nil, 0
	}
	s := string(buf[:end])
	line, rest, _ := strings.Cut(s, "\r\n")
	method, line, ok1 := strings.Cut(line, " ")
	uri, proto, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || !httpguts.ValidHeaderFieldName(method) || method == http.MethodConnect || len(uri) == 0 || uri[0] != '/' {
		return nil, 0
	}
	var major, minor int
	switch proto {
	case "HTTP/1.1":
		major, minor = 1, 1
	case "HTTP/1.0":
		major, minor = 1, 0
	default:
		return nil, 0
	}
	for i := 0; i < len(uri); i++ {
		if c := uri[i]; c <= ' ' || c == 0x7f {
			return nil, 0
		}
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, 0
	}
	h, ok := parseFields(rest, f)
	if !ok {
		return nil, 0
	}
	if _, ok := h["Content-Length"]; ok {
		return nil, 0 // a body: http.ReadRequest frames it
	}
	if _, ok := h["Transfer-Encoding"]; ok {
		return nil, 0
	}
	hostLines := h["Host"]
	if len(hostLines) > 1 {
		return nil, 0 // http.ReadRequest refuses it
	}
	host := ""
	if len(hostLines) == 1 {
		host = hostLines[0]
	}
	delete(h, "Host") // as http.ReadRequest does; the caller checks the count
	fixPragma(h)
	// WithContext copies a request that does not escape: one allocation.
	r := http.Request{
		Method:     method,
		URL:        u,
		Proto:      proto,
		ProtoMajor: major,
		ProtoMinor: minor,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		RequestURI: uri,
		Close:      shouldClose(minor, h["Connection"]),
	}
	if u.Host != "" {
		r.Host = u.Host
	}
	req = r.WithContext(ctx)
	_, _ = br.Discard(end)
	return req, len(hostLines)
}

// shouldClose is net/http's rule for a request's Close (HTTP/1.x).
func shouldClose(minor int, conn []string) bool {
	hasClose := httpguts.HeaderValuesContainsToken(conn, "close")
	if minor == 0 {
		return hasClose || !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	}
	return hasClose
}

// validValue reports whether a header value has only the bytes RFC 9110
// allows (visible ASCII, space, tab, obs-text).
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// readFastResponse parses, as readFastRequest does, a response head that
// is already whole in br's buffer, for the answers most calls get: HTTP/1.1
// or HTTP/1.0, a final status with a body of one valid Content-Length, no
// Transfer-Encoding, to a request other than HEAD. Anything else returns
// nil and leaves br as it was, for http.ReadResponse. What it returns is
// what http.ReadResponse returns for the same bytes
// (TestFastResponseMatchesReadResponse, FuzzFastResponse). A body is
// read through fb, which the caller owns and reuses once the body is done.
func readFastResponse(br *bufio.Reader, req *http.Request, maxHeader int, fb *fixedBody) *http.Response {
	if req.Method == http.MethodHead {
		return nil
	}
	buf, _ := br.Peek(br.Buffered())
	end := headEnd(buf)
	if end < 0 || end > maxHeader {
		return nil
	}
	s := string(buf[:end])
	line, rest, _ := strings.Cut(s, "\r\n")
	proto, status, ok := strings.Cut(line, " ")
	var major, minor int
	switch proto {
	case "HTTP/1.1":
		major, minor = 1, 1
	case "HTTP/1.0":
		major, minor = 1, 0
	default:
		return nil
	}
	status = strings.TrimLeft(status, " ")
	code, _, _ := strings.Cut(status, " ")
	if !ok || len(code) != 3 || code[0] < '2' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' {
		return nil
	}
	statusCode := int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	if statusCode == http.StatusNoContent || statusCode == http.StatusNotModified || !validValue(status) {
		return nil
	}
	h, ok := parseFields(rest, nil) // the answer's header outlives the call's use of c: never reused
	if !ok {
		return nil
	}
	cl := int64(-1)
	if v := h["Content-Length"]; len(v) == 1 && len(v[0]) > 0 && len(v[0]) <= 18 {
		cl = 0
		for i := 0; i < len(v[0]); i++ {
			c := v[0][i]
			if c < '0' || c > '9' {
				return nil
			}
			cl = cl*10 + int64(c-'0')
		}
	}
	if cl < 0 {
		return nil // none, several, or not a number: http.ReadResponse decides
	}
	if _, ok := h["Transfer-Encoding"]; ok {
		return nil
	}
	fixPragma(h)
	closing := false
	conn := h["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conn, "close")
	if minor == 0 {
		closing = hasClose || !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	} else if hasClose {
		closing = true
		delete(h, "Connection")
	}
	resp := &http.Response{
		Status:        status,
		StatusCode:    statusCode,
		Proto:         proto,
		ProtoMajor:    major,
		ProtoMinor:    minor,
		Header:        h,
		ContentLength: cl,
		Close:         closing,
		Request:       req,
		Body:          http.NoBody,
	}
	_, _ = br.Discard(end)
	if cl > 0 {
		*fb = fixedBody{br: br, left: cl}
		resp.Body = fb
	}
	return resp
}

// headEnd is the length of the head at the start of buf, through its
// empty line, or -1 when buf does not hold it whole with CRLF line ends.
func headEnd(buf []byte) int {
	for i := 0; i+3 < len(buf); i++ {
		if buf[i] == '\r' && buf[i+1] == '\n' && buf[i+2] == '\r' && buf[i+3] == '\n' {
			return i + 4
		}
	}
	return -1
}

// parseFields parses the header lines of a head (after its first line,
// through the empty line) into a header whose keys and values are pieces
// of rest; false for anything textproto's reader would read differently
// or refuse (folded lines, bad names or values, bare LF).
//
// With f, the header and the values' backing array are f's, cleared and
// reused: the caller must be done with the header f returned before.
func parseFields(rest string, f *fields) (http.Header, bool) {
	lines := strings.Count(rest, "\r\n") - 1 // the last is the empty line
	if lines < 0 || lines > maxFastHeaders {
		return nil, false
	}
	var h http.Header
	var vals []string
	if f != nil && lines > maxReusedHeader {
		f = nil // a head this large once: not worth keeping its map
	}
	if f != nil && f.h != nil {
		h = f.h
		clear(h)
		if cap(f.vals) < lines {
			f.vals = make([]string, lines)
		}
		vals = f.vals[:lines]
	} else {
		h = make(http.Header, lines)
		vals = make([]string, lines)
		if f != nil {
			f.h, f.vals = h, vals
		}
	}
	for k := 0; ; k++ {
		kv, after, _ := strings.Cut(rest, "\r\n")
		rest = after
		if kv == "" {
			return h, true
		}
		colon := strings.IndexByte(kv, ':')
		if colon <= 0 {
			return nil, false
		}
		key, v := kv[:colon], strings.Trim(kv[colon+1:], " \t")
		if !httpguts.ValidHeaderFieldName(key) || !validValue(v) {
			return nil, false
		}
		key = http.CanonicalHeaderKey(key)
		vals[k] = v
		if old, ok := h[key]; ok {
			h[key] = append(old, v)
		} else {
			h[key] = vals[k : k+1 : k+1]
		}
	}
}

// fields is a header map and a backing array for its values that a
// connection reuses for each request head it parses (parseFields).
type fields struct {
	h    http.Header
	vals []string
}

// fixPragma is net/http's: "Pragma: no-cache" without Cache-Control adds
// "Cache-Control: no-cache".
func fixPragma(h http.Header) {
	if hp, ok := h["Pragma"]; ok && len(hp) > 0 && hp[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
}

// fixedBody is a response body of a known length read from the
// connection's buffer: its last bytes come with io.EOF, as net/http's do,
// so the connection goes back to its pool as soon as they are read.
type fixedBody struct {
	br   *bufio.Reader
	left int64
}

func (b *fixedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close leaves the connection to its owner (body.finish).
func (b *fixedBody) Close() error { return nil }
