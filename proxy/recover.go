package proxy

import (
	"net/http"

	"github.com/skeinmesh/skein/recovery"
)

// The layer label values of skein_panics_total, one per place a recovery
// layer sits in proxy/chain.go.
const (
	panicLayerAPI         = "api"          // the app-facing API chain
	panicLayerPeer        = "peer"         // the peer-facing chain (h2 and h3)
	panicLayerPeerAttempt = "peer_attempt" // one try to another sidecar, below the breaker
	panicLayerAppChannel  = "app_channel"  // the call into the local app
)

// recoveredAPI answers an API request whose handling panicked before its
// response started: Dapr's error envelope, 500, reason INTERNAL.
func recoveredAPI(w http.ResponseWriter, r *http.Request) {
	replyPanic(w, rawTarget(r))
}

// recoveredPeer is the same for a call from another sidecar.
func (s *Sidecar) recoveredPeer(w http.ResponseWriter, _ *http.Request) {
	replyPanic(w, s.self.AppID)
}

func replyPanic(w http.ResponseWriter, target string) {
	if target == "" {
		// Not an invocation (or not one we could parse): no id to name.
		writeError(w, http.StatusInternalServerError, codeDirectInvoke, "internal error: "+recovery.ErrPanic.Error(), ReasonInternal, nil)
		return
	}
	writeInvokeError(w, target, recovery.ErrPanic)
}
