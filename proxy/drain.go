package proxy

import (
	"net/http"
	"time"

	"github.com/skeinmesh/skein/discovery"
)

// DefaultDrainDelay is how long a stopping sidecar keeps serving after it
// has deregistered: four of its callers' discovery refreshes
// (discovery.DefaultRefreshInterval), so that every caller has re-read the
// registry and stopped picking it before its ports close.
const DefaultDrainDelay = 4 * discovery.DefaultRefreshInterval

// drain serves on for d after the instance deregistered, every HTTP/1.1
// answer closing its connection (closeWhileDraining). Callers that have not
// yet re-read discovery still get answers, and their next call opens a new
// connection to an instance that stays. Closing the listeners and idle
// connections at once instead (http.Server.Shutdown) races a caller
// writing a request on a kept-alive connection as it closes: a POST sent
// then cannot be told from one the app received, so it cannot be sent
// again and fails. TestGracefulShutdown and TestRollingRestart (test/faults)
// pin this.
func (s *Sidecar) drain(d time.Duration) {
	if d <= 0 {
		return
	}
	s.draining.Store(true)
	s.log.Info("draining: deregistered, serving calls still routed here", "for", d)
	t := time.NewTimer(d)
	defer t.Stop()
	<-t.C
}

// closeWhileDraining asks an HTTP/1.x client to close its connection after
// this answer once the sidecar is stopping ("Connection: close", RFC 9112
// §9.6), so that its next call is picked and connected afresh. An upgrade
// (WebSocket) keeps its connection: it is the tunnel. HTTP/2 and HTTP/3
// clients get a GOAWAY when the drain ends, and the picker sends the
// streams it refused to another instance.
func (s *Sidecar) closeWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() && r.ProtoMajor == 1 && r.Header.Get("Upgrade") == "" {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}
