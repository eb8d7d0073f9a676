package controlplane

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/identity"
)

// Attester proves which workload presents a credential, for the CA: on
// Kubernetes, the pod a projected service-account token is bound to
// (package kube). Implementations are safe for concurrent use.
type Attester interface {
	// Attest checks that token proves a workload that runs app appID in
	// namespace. A refusal wraps ErrNotAttested; any other error means the
	// token could not be checked (the API server unreachable), and the
	// sidecar should try again. The Workload says what is known of the
	// token's holder either way, for the log.
	Attest(ctx context.Context, token, namespace, appID string) (Workload, error)
}

// Workload is what an Attester learnt of a token's holder.
type Workload struct {
	Namespace, Pod, ServiceAccount string
}

// logAttrs are the workload's log attributes: those known.
func (w Workload) logAttrs() []any {
	var out []any
	for _, kv := range [][2]string{{"namespace", w.Namespace}, {"pod", w.Pod}, {"service_account", w.ServiceAccount}} {
		if kv[1] != "" {
			out = append(out, kv[0], kv[1])
		}
	}
	return out
}

// ErrNotAttested is an Attester's refusal: the token does not prove a
// workload entitled to the SPIFFE ID asked for.
var ErrNotAttested = errors.New("service-account token refused")

// appOf reads the namespace and app id of an app's SPIFFE ID in trust
// domain td: spiffe://<td>/ns/<namespace>/<app-id>; anything else wraps
// identity.ErrWrongID.
func appOf(id spiffeid.ID, td spiffeid.TrustDomain) (namespace, appID string, err error) {
	if id.TrustDomain() != td {
		return "", "", fmt.Errorf("%w: %s is not in trust domain %s", identity.ErrWrongID, id, td)
	}
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(seg) != 3 || seg[0] != "ns" || seg[1] == "" || seg[2] == "" {
		return "", "", fmt.Errorf("%w: %s is not spiffe://<trust-domain>/ns/<namespace>/<app-id>", identity.ErrWrongID, id)
	}
	return seg[1], seg[2], nil
}
