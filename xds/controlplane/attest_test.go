package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/identity"
)

// podTokens is an Attester that knows pods by token: token → the pod's
// namespace, name and app. "down" fails as an unreachable API server.
type podTokens struct {
	mu    sync.Mutex
	pods  map[string][3]string
	calls int
}

func (p *podTokens) Attest(_ context.Context, token, ns, app string) (Workload, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if token == "down" {
		return Workload{}, errors.New("token review: connection refused")
	}
	pod, ok := p.pods[token]
	if !ok {
		return Workload{}, fmt.Errorf("%w: the API server does not accept it", ErrNotAttested)
	}
	wl := Workload{Namespace: pod[0], Pod: pod[1], ServiceAccount: pod[2]}
	if pod[0] != ns || pod[2] != app {
		return wl, fmt.Errorf("%w: pod %s/%s runs app %q, not %q", ErrNotAttested, pod[0], pod[1], pod[2], app)
	}
	return wl, nil
}

// TestSigningWithAttester: with an Attester (--kubernetes), the
// service-account token decides alone: it gets the SVID of its pod's app
// and nothing else, each refusal logged with the pod and never the token;
// a join token alone gets no SVID unless JoinTokenSVIDs; an attester that
// cannot answer is 503, for the sidecar to retry.
func TestSigningWithAttester(t *testing.T) {
	att := &podTokens{pods: map[string][3]string{"tok-orders": {"shop", "orders-0", "orders"}}}
	for _, joinSVIDs := range []bool{false, true} {
		t.Run(fmt.Sprint("join token svids ", joinSVIDs), func(t *testing.T) {
			cp := startCP(t, "", Options{Attester: att, JoinTokenSVIDs: joinSVIDs})
			b := cp.bundle()
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: identity.ControlPlaneClientConfig(func() *x509bundle.Bundle { return b }, cp.TrustDomain())}}
			post := func(join, kube, id string) (int, string) {
				t.Helper()
				js, _ := json.Marshal(identity.SignRequest{SPIFFEID: id, CSR: csrPEM(t, id), KubernetesToken: kube})
				req, _ := http.NewRequest(http.MethodPost, "https://"+cp.addr+identity.SignPath, bytes.NewReader(js))
				if join != "" {
					req.Header.Set("Authorization", "Bearer "+join)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				out, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(out)
			}
			const orders, billing = "spiffe://public/ns/shop/orders", "spiffe://public/ns/shop/billing"
			joinOnly := 401
			if joinSVIDs {
				joinOnly = 200
			}
			tests := []struct {
				name, join, kube, id string
				code                 int
				want                 string
			}{
				{"the pod's token, its app", "", "tok-orders", orders, 200, "BEGIN CERTIFICATE"},
				{"the pod's token, another app", "", "tok-orders", billing, 403, `runs app \"orders\", not \"billing\"`},
				{"a refused token is not rescued by a join token", testToken, "tok-orders", billing, 403, "service-account token refused"},
				{"an unknown token", "", "tok-forged", orders, 403, "does not accept it"},
				{"another trust domain: refused before review", "", "tok-orders", "spiffe://evil/ns/shop/orders", 403, "trust domain"},
				{"not an app's id", "", "tok-orders", "spiffe://public/skein/control-plane", 403, "/ns/<namespace>/<app-id>"},
				{"the attester cannot answer", "", "down", orders, 503, "could not be checked"},
				{"a join token alone", testToken, "", orders, joinOnly, ""},
				{"nothing", "", "", orders, 401, ""},
			}
			for _, tt := range tests {
				code, out := post(tt.join, tt.kube, tt.id)
				if code != tt.code || !strings.Contains(out, tt.want) {
					t.Errorf("%s: %d %s, want %d with %q", tt.name, code, out, tt.code, tt.want)
				}
			}
			logs := cp.logs.String()
			line := func(msg, id string) string {
				for l := range strings.Lines(logs) {
					if strings.Contains(l, `msg="`+msg+`"`) && strings.Contains(l, "spiffe_id="+id+" ") {
						return l
					}
				}
				t.Errorf("no log line %q for %s:\n%s", msg, id, logs)
				return ""
			}
			for _, l := range []string{
				line("svid refused: the service-account token does not prove the pod runs this app", billing),
				line("svid signed", orders),
			} {
				if l != "" && !strings.Contains(l, "namespace=shop pod=orders-0 service_account=orders") {
					t.Errorf("log line without the pod: %s", l)
				}
			}
			if !joinSVIDs && !strings.Contains(logs, "svid refused: no service-account token") {
				t.Errorf("a join token's refusal not logged:\n%s", logs)
			}
			for _, secret := range []string{"tok-orders", "tok-forged", testToken} {
				if strings.Contains(logs, secret) {
					t.Errorf("a token reached the log: %q", secret)
				}
			}
		})
	}
	t.Run("a sidecar with a token file", func(t *testing.T) {
		cp := startCP(t, "", Options{Attester: att})
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte("tok-orders\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		src, err := identity.NewControlPlaneSource(context.Background(), identity.ControlPlaneOptions{Address: cp.addr, KubernetesTokenFile: file},
			spiffeid.RequireFromString("spiffe://public/ns/shop/orders"), identity.NewMetrics(prometheusRegistry(), "orders"), log)
		if err != nil {
			t.Fatal(err)
		}
		if sv, _ := src.GetX509SVID(); sv.ID.String() != "spiffe://public/ns/shop/orders" {
			t.Errorf("svid %s", sv.ID)
		}
		// The file is read at every request: the kubelet rewrites it.
		if err := os.WriteFile(file, []byte("tok-rotated"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = identity.NewControlPlaneSource(context.Background(), identity.ControlPlaneOptions{Address: cp.addr, KubernetesTokenFile: file, Bundle: cp.bundle()},
			spiffeid.RequireFromString("spiffe://public/ns/shop/orders"), identity.NewMetrics(prometheusRegistry(), "orders"), log)
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("with a token the attester refuses: %v, want 403", err)
		}
		_, err = identity.NewControlPlaneSource(context.Background(), identity.ControlPlaneOptions{Address: cp.addr, KubernetesTokenFile: file + ".missing", Bundle: cp.bundle()},
			spiffeid.RequireFromString("spiffe://public/ns/shop/orders"), identity.NewMetrics(prometheusRegistry(), "orders"), log)
		if err == nil || !strings.Contains(err.Error(), "token.missing") {
			t.Errorf("with no token file: %v, want an error naming it", err)
		}
	})
}
