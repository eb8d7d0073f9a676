package proxy

import (
	"net/http"
	"strconv"
	"time"

	"github.com/skeinmesh/skein/proxy/daprgrpc"
)

// headerGRPCTimeout carries a call's remaining time budget between sidecars
// in gRPC's format (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
// at most 8 digits and a unit, H M S m u n. An app may send it too.
const headerGRPCTimeout = "Grpc-Timeout"

// encodeTimeout formats d for grpc-timeout, in the finest unit that fits.
func encodeTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit time.Duration
		c    string
	}{{time.Nanosecond, "n"}, {time.Microsecond, "u"}, {time.Millisecond, "m"}, {time.Second, "S"}, {time.Minute, "M"}} {
		if v := d / u.unit; v < 1e8 {
			if d%u.unit != 0 {
				v++ // round up: never shorten the caller's budget
			}
			return strconv.FormatInt(int64(v), 10) + u.c
		}
	}
	return strconv.FormatInt(int64(d/time.Hour)+1, 10) + "H"
}

// parseTimeout parses a grpc-timeout value.
func parseTimeout(s string) (time.Duration, bool) { return daprgrpc.ParseTimeout(s) }

// propagateDeadline writes the request's remaining time into grpc-timeout,
// keeping a shorter one the app sent, so the callee stops waiting on its app
// when the caller would stop waiting anyway.
func propagateDeadline(r *http.Request) {
	dl, ok := r.Context().Deadline()
	if !ok {
		return
	}
	left := time.Until(dl)
	if v, ok := parseTimeout(r.Header.Get(headerGRPCTimeout)); ok && v <= left {
		return
	}
	r.Header[headerGRPCTimeout] = []string{encodeTimeout(left)}
}
