package proxy

import "net/http"

// firstCall is the outermost client layer of the outbound paths: when the
// first call has been answered, start-up is over (Options.StartupDone). A
// call that failed before an answer (no instance yet, a refused
// connection) may not have done start-up's work: the next one is waited
// for.
func (s *Sidecar) firstCall(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err == nil {
			s.startupDone()
		}
		return resp, err
	})
}

// firstInbound is firstCall's server layer, for calls from peers.
func (s *Sidecar) firstInbound(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		s.startupDone()
	})
}

// startupDone calls Options.StartupDone the first time; after that it is
// one atomic load.
func (s *Sidecar) startupDone() {
	if s.opts.StartupDone == nil || s.firstCallDone.Load() || !s.firstCallDone.CompareAndSwap(false, true) {
		return
	}
	go s.opts.StartupDone()
}
