package proxy

import (
	"net"
	"net/http"
	"slices"
	"strings"
)

// Header names Skein reads or writes, in canonical form so lookups on
// http.Header need no canonicalisation at run time.
const (
	HeaderAppID           = "Dapr-App-Id"
	HeaderCallerAppID     = "Dapr-Caller-App-Id"
	HeaderCallerNamespace = "Dapr-Caller-Namespace"
	HeaderCalleeAppID     = "Dapr-Callee-App-Id"
	HeaderAPIToken        = "Dapr-Api-Token"
	headerForwarded       = "Forwarded"
	headerXForwardedFor   = "X-Forwarded-For"
	headerXForwardedHost  = "X-Forwarded-Host"
)

// isHopHeader reports whether k, a canonical name, is a hop-by-hop header
// removed on every hop (RFC 9110 §7.6.1 plus the legacy names Dapr also
// strips, contract §1.6).
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade",
		"Http2-Settings", "Te", "Trailer", "Proxy-Authorization", "Proxy-Authenticate":
		return true
	}
	return false
}

// connectionNamed returns the canonical names the Connection header of h
// lists: hop-by-hop for this connection only. Nil, with no allocation,
// without one.
func connectionNamed(h http.Header) []string {
	var named []string
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = http.CanonicalHeaderKey(strings.TrimSpace(f)); f != "" {
				named = append(named, f)
			}
		}
	}
	return named
}

// removeHopHeaders deletes hop-by-hop headers and any header named in
// Connection from h.
func removeHopHeaders(h http.Header) {
	named := connectionNamed(h)
	for k := range h {
		if isHopHeader(k) || slices.Contains(named, k) {
			delete(h, k)
		}
	}
}

// forwardFields copies the fields of src but the hop-by-hop ones
// (removeHopHeaders' rule) into dst, in one pass with no deletes. With own,
// the values are copied into one new array (http.Header.Clone's way), so
// dst can be changed without touching src; without, dst shares src's
// slices.
func forwardFields(dst, src http.Header, own bool) {
	named := connectionNamed(src)
	var sv []string
	if own {
		n := 0
		for _, vv := range src {
			n += len(vv)
		}
		sv = make([]string, n)
	}
	for k, vv := range src {
		if isHopHeader(k) || slices.Contains(named, k) {
			continue
		}
		if own && vv != nil {
			n := copy(sv, vv)
			vv, sv = sv[:n:n], sv[n:]
		}
		dst[k] = vv
	}
}

// Caller describes the calling app, stamped on every invocation.
type Caller struct {
	AppID     string
	Namespace string
}

// stampIdentity removes any client-sent copies of the identity headers and
// sets them from the sidecar's own knowledge (PRODUCT.md difference 2: Dapr
// lets remote HTTP callers spoof dapr-caller-app-id; Skein never does).
func stampIdentity(h http.Header, caller Caller, callee Target) {
	v := []string{caller.AppID, caller.Namespace, callee.AppID} // one allocation for the three
	h[HeaderCallerAppID] = v[0:1:1]
	h[HeaderCallerNamespace] = v[1:2:2]
	h[HeaderCalleeAppID] = v[2:3:3]
}

// Host describes where a sidecar runs, for Forwarded / X-Forwarded-* headers.
type Host struct {
	IP   string // DAPR_HOST_IP, else the preferred outbound address
	Name string // hostname
}

// forwarding holds one host's Forwarded / X-Forwarded-* values, computed
// once. The one-element slices are shared by every request that had no
// earlier hop and must never be modified in place (appending is safe: their
// capacity is their length).
type forwarding struct {
	ip, element      string
	ipList, nameList []string
	elementList      []string
}

// newForwarding computes the values Dapr adds on remote calls: the RFC 7239
// element for=<ip>;by=<ip>;host=<hostname>, IPv6 quoted and bracketed.
func newForwarding(h Host) *forwarding {
	ip := h.IP
	if strings.Contains(ip, ":") {
		ip = `"[` + ip + `]"`
	}
	el := "for=" + ip + ";by=" + ip + ";host=" + h.Name
	return &forwarding{
		ip: h.IP, element: el,
		ipList: []string{h.IP}, nameList: []string{h.Name}, elementList: []string{el},
	}
}

// stamp appends this hop to X-Forwarded-For and Forwarded and sets
// X-Forwarded-Host (remote calls only, contract §1.6).
func (f *forwarding) stamp(h http.Header) {
	if v := h[headerXForwardedFor]; len(v) > 0 {
		h[headerXForwardedFor] = appendList(v, f.ip)
	} else {
		h[headerXForwardedFor] = f.ipList
	}
	h[headerXForwardedHost] = f.nameList
	if v := h[headerForwarded]; len(v) > 0 {
		h[headerForwarded] = appendList(v, f.element)
	} else {
		h[headerForwarded] = f.elementList
	}
}

// appendList appends v as a list element to the last field value, so the
// header keeps one line: "a, b".
func appendList(vs []string, v string) []string {
	return []string{strings.Join(vs, ", ") + ", " + v}
}

// outboundIP returns the address the host would use for outbound traffic,
// without sending anything (a UDP connect only selects a route).
func outboundIP() string {
	c, err := net.Dial("udp", "192.0.2.1:9") // TEST-NET-1, never contacted
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
		return a.IP.String()
	}
	return "127.0.0.1"
}
