package h1

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkTransports measures the candidate client transports between
// sidecars side by side (issue 11, part A), against one net/http server
// over TLS 1.3 on loopback that answers 1 KiB, as the peer port does:
//
//	go test ./proxy/h1 -run '^$' -bench Transports -benchmem -count 5
//
// lean-h1 is this package; std-h1 and std-h2 are net/http's Transport
// speaking HTTP/1.1 and HTTP/2. ctxsw/op counts the process's OS context
// switches (voluntary and not) per call: goroutine hand-offs between
// threads show there. CPU includes the server's, which is the same code
// for the two HTTP/1.1 candidates.
func BenchmarkTransports(b *testing.B) {
	body := strings.Repeat("x", 1024)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		_, _ = io.WriteString(w, body)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	base := srv.Client().Transport.(*http.Transport).TLSClientConfig
	tlsFor := func(proto string) *tls.Config {
		c := base.Clone()
		c.MinVersion = tls.VersionTLS13
		c.ServerName = "127.0.0.1"
		c.NextProtos = []string{proto}
		return c
	}
	std := func(h2 bool) http.RoundTripper {
		var p http.Protocols
		proto := "http/1.1"
		if h2 {
			p.SetHTTP2(true)
			proto = "h2"
		} else {
			p.SetHTTP1(true)
		}
		return &http.Transport{Protocols: &p, TLSClientConfig: tlsFor(proto), MaxIdleConnsPerHost: 64, DisableCompression: true}
	}
	candidates := []struct {
		name string
		rt   http.RoundTripper
	}{
		{"lean-h1", &Transport{Dial: DialTLS(&net.Dialer{Timeout: time.Second}, tlsFor("http/1.1"))}},
		{"std-h1", std(false)},
		{"std-h2", std(true)},
	}
	for _, c := range candidates {
		call := func(b *testing.B, buf []byte) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/bench", nil)
			resp, err := c.rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					break
				}
			}
			_ = resp.Body.Close()
		}
		b.Run(c.name+"/serial", func(b *testing.B) {
			buf := make([]byte, 4096)
			call(b, buf) // connect outside the measurement
			b.ReportAllocs()
			sw := switches()
			b.ResetTimer()
			for b.Loop() {
				call(b, buf)
			}
			b.ReportMetric(float64(switches()-sw)/float64(b.N), "ctxsw/op")
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			sw := switches()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 4096)
				for pb.Next() {
					call(b, buf)
				}
			})
			b.ReportMetric(float64(switches()-sw)/float64(b.N), "ctxsw/op")
		})
		if p, ok := c.rt.(interface{ CloseIdleConnections() }); ok {
			p.CloseIdleConnections()
		}
	}
}

// switches is the process's context switches so far.
func switches() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Nvcsw + ru.Nivcsw
}
