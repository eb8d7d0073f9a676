package kube

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/skeinmesh/skein/inject"
	"github.com/skeinmesh/skein/xds/controlplane"
)

// fakeToken is a JWT-shaped token expiring at exp: the tests' API server
// below knows tokens by their text, as the real one knows them by their
// signature.
func fakeToken(name string, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"ES256"}`)) + "." + enc(fmt.Appendf(nil, `{"exp":%d,"sub":%q}`, exp.Unix(), name)) + "." + enc([]byte("sig"))
}

// fakeAPI plays the API server's part for the Attester: the TokenReview
// status of each known token, and the pods a GET finds.
type fakeAPI struct {
	reviews map[string]authv1.TokenReviewStatus
	pods    map[string]*corev1.Pod // "ns/name"
	calls   int                    // TokenReviews made
	down    bool
}

func (f *fakeAPI) attester(cached ...*corev1.Pod) *Attester {
	store := cache.NewStore(cache.MetaNamespaceKeyFunc)
	for _, p := range cached {
		_ = store.Add(p)
	}
	a := newAttester(store)
	a.tokenReview = func(_ context.Context, token, audience string) (authv1.TokenReviewStatus, error) {
		f.calls++
		if f.down {
			return authv1.TokenReviewStatus{}, errors.New("token review: connection refused")
		}
		if audience != inject.TokenAudience {
			return authv1.TokenReviewStatus{}, fmt.Errorf("review for audience %q", audience)
		}
		st, ok := f.reviews[token]
		if !ok {
			return authv1.TokenReviewStatus{Error: "invalid bearer token"}, nil
		}
		return st, nil
	}
	a.getPod = func(_ context.Context, ns, name string) (*corev1.Pod, error) {
		if f.down {
			return nil, errors.New("get pod: connection refused")
		}
		return f.pods[ns+"/"+name], nil
	}
	return a
}

// podAccount is a review of a token of service account sa bound to pod.
func podAccount(ns, sa, pod, uid string) authv1.TokenReviewStatus {
	return authv1.TokenReviewStatus{
		Authenticated: true,
		Audiences:     []string{inject.TokenAudience},
		User: authv1.UserInfo{
			Username: "system:serviceaccount:" + ns + ":" + sa,
			Extra:    map[string]authv1.ExtraValue{podNameKey: {pod}, podUIDKey: {uid}},
		},
	}
}

// daprPod is a cached Dapr pod as transformPod keeps it.
func daprPod(ns, name, uid, sa, app string) *corev1.Pod {
	p := &corev1.Pod{}
	p.Namespace, p.Name, p.UID = ns, name, types.UID(uid)
	p.Annotations = map[string]string{inject.AnnotationEnabled: "true", inject.AnnotationAppID: app}
	p.Spec.ServiceAccountName = sa
	p.Status.Phase = corev1.PodRunning
	return p
}

// TestAttest: the CA's decision on a sidecar's token. Only the token of
// the pod that runs the app asked for, in its namespace, as its service
// account, still the same pod, gets an SVID.
func TestAttest(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	tokA, tokB := fakeToken("a", exp), fakeToken("b", exp)
	api := &fakeAPI{reviews: map[string]authv1.TokenReviewStatus{
		tokA: podAccount("shop", "orders", "orders-0", "uid-a"),
		tokB: podAccount("shop", "billing", "billing-0", "uid-b"),
	}}
	podA := daprPod("shop", "orders-0", "uid-a", "orders", "orders")
	podB := daprPod("shop", "billing-0", "uid-b", "billing", "billing")

	tests := []struct {
		name      string
		token     string
		review    *authv1.TokenReviewStatus // replaces the token's review
		pod       func(*corev1.Pod)         // edits pod A, as cached
		ns, app   string
		want      string // "" admits; else in the refusal
		wantNotOK bool   // an error that is no refusal (503)
	}{
		{name: "the pod's own token, its app", token: tokA, ns: "shop", app: "orders"},
		{name: "another pod's token", token: tokB, ns: "shop", app: "orders", want: `pod shop/billing-0 runs app "billing", not "orders"`},
		{name: "the pod's token, another app id", token: tokA, ns: "shop", app: "billing", want: `pod shop/orders-0 runs app "orders", not "billing"`},
		{name: "the pod's token, another namespace", token: tokA, ns: "other", app: "orders", want: "the token is of namespace shop, the SPIFFE ID is of namespace other"},
		{name: "pod deleted and created again under its name", token: tokA, ns: "shop", app: "orders",
			pod: func(p *corev1.Pod) { p.UID = "uid-new" }, want: "uid uid-new, the token's uid-a"},
		{name: "not a Dapr pod", token: tokA, ns: "shop", app: "orders",
			pod: func(p *corev1.Pod) { delete(p.Annotations, inject.AnnotationEnabled) }, want: "not a Dapr pod"},
		{name: "the app id of the sidecar's flag when there is no annotation", token: tokA, ns: "shop", app: "orders",
			pod: func(p *corev1.Pod) {
				delete(p.Annotations, inject.AnnotationAppID)
				p.Spec.Containers = []corev1.Container{{Name: "daprd", Args: []string{"sidecar", "--app-id", "orders"}}}
			}},
		{name: "the pod runs as another service account", token: tokA, ns: "shop", app: "orders",
			pod: func(p *corev1.Pod) { p.Spec.ServiceAccountName = "admin" }, want: "runs as service account admin, the token is orders's"},
		{name: "finished pod", token: tokA, ns: "shop", app: "orders",
			pod: func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, want: "has finished"},
		{name: "a token for another audience", token: tokA, ns: "shop", app: "orders",
			review: &authv1.TokenReviewStatus{Error: `[invalid bearer token, token audiences ["other"] is invalid for the target audiences ["skein.io/control-plane"]]`},
			want:   "does not accept it for audience skein.io/control-plane: [invalid bearer token, token audiences"},
		{name: "an audience-agnostic authenticator's yes", token: tokA, ns: "shop", app: "orders",
			review: func() *authv1.TokenReviewStatus {
				st := podAccount("shop", "orders", "orders-0", "uid-a")
				st.Audiences = nil
				return &st
			}(),
			want: "not for audience skein.io/control-plane"},
		{name: "an expired token", token: tokA, ns: "shop", app: "orders",
			review: &authv1.TokenReviewStatus{Error: "[invalid bearer token, service account token has expired]"}, want: "has expired"},
		{name: "not a service account", token: tokA, ns: "shop", app: "orders",
			review: &authv1.TokenReviewStatus{Authenticated: true, Audiences: []string{inject.TokenAudience}, User: authv1.UserInfo{Username: "admin"}},
			want:   `not a service account's token (user "admin")`},
		{name: "a token bound to no pod", token: tokA, ns: "shop", app: "orders",
			review: func() *authv1.TokenReviewStatus {
				st := podAccount("shop", "orders", "", "")
				st.User.Extra = nil
				return &st
			}(),
			want: "bound to no pod"},
		{name: "not a JWT (a join token sent by mistake)", token: "s3cret-join-token", ns: "shop", app: "orders", want: "not a service-account token"},
		{name: "unknown token", token: fakeToken("forged", exp), ns: "shop", app: "orders", want: "invalid bearer token"},
		{name: "the API server down", token: tokA, ns: "shop", app: "orders", wantNotOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := *api
			api.reviews = map[string]authv1.TokenReviewStatus{tokA: api.reviews[tokA], tokB: api.reviews[tokB]}
			if tt.review != nil {
				api.reviews[tt.token] = *tt.review
			}
			api.down = tt.wantNotOK
			a := podA.DeepCopy()
			if tt.pod != nil {
				tt.pod(a)
			}
			// The API server agrees with the cache.
			api.pods = map[string]*corev1.Pod{"shop/orders-0": a, "shop/billing-0": podB}
			wl, err := api.attester(a, podB).Attest(context.Background(), tt.token, tt.ns, tt.app)
			switch {
			case tt.wantNotOK:
				if err == nil || errors.Is(err, controlplane.ErrNotAttested) {
					t.Fatalf("err %v: want an error that is no refusal", err)
				}
			case tt.want == "":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if d := cmp.Diff(controlplane.Workload{Namespace: "shop", Pod: "orders-0", ServiceAccount: "orders"}, wl); d != "" {
					t.Errorf("workload (-want +got):\n%s", d)
				}
			default:
				if !errors.Is(err, controlplane.ErrNotAttested) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err %v: want a refusal with %q", err, tt.want)
				}
			}
			if err != nil && strings.Contains(err.Error(), tt.token) {
				t.Errorf("the refusal holds the token: %v", err)
			}
		})
	}
}

// TestAttestPodLookup: the cache answers for the pod the token is bound
// to; a pod not cached yet, or cached as an older pod of the same name, is
// asked of the API server, whose answer decides.
func TestAttestPodLookup(t *testing.T) {
	tok := fakeToken("a", time.Now().Add(time.Hour))
	api := &fakeAPI{reviews: map[string]authv1.TokenReviewStatus{tok: podAccount("shop", "web", "web-0", "uid-2")}}
	fresh := daprPod("shop", "web-0", "uid-2", "web", "web")
	stale := daprPod("shop", "web-0", "uid-1", "web", "web")
	tests := []struct {
		name   string
		cached []*corev1.Pod
		api    *corev1.Pod
		want   string
	}{
		{"cached", []*corev1.Pod{fresh}, nil, ""},
		{"not cached yet", nil, fresh, ""},
		{"cached as the pod before it", []*corev1.Pod{stale}, fresh, ""},
		{"deleted", nil, nil, "does not exist"},
		{"an older pod both in the cache and the API server", []*corev1.Pod{stale}, stale, "deleted and created again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api.pods = map[string]*corev1.Pod{}
			if tt.api != nil {
				api.pods["shop/web-0"] = tt.api
			}
			_, err := api.attester(tt.cached...).Attest(context.Background(), tok, "shop", "web")
			if tt.want == "" && err != nil || tt.want != "" && (!errors.Is(err, controlplane.ErrNotAttested) || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// TestAttestCachesReviews: a token reviewed successfully is not reviewed
// again for a minute, nor past its expiry; a refused one always is; the
// cache is bounded. The pod is checked every time.
func TestAttestCachesReviews(t *testing.T) {
	now := time.Now()
	soon := fakeToken("soon", now.Add(70*time.Second))
	later := fakeToken("later", now.Add(time.Hour))
	api := &fakeAPI{
		reviews: map[string]authv1.TokenReviewStatus{soon: podAccount("shop", "web", "web-0", "uid-1"), later: podAccount("shop", "web", "web-0", "uid-1")},
		pods:    map[string]*corev1.Pod{},
	}
	pod := daprPod("shop", "web-0", "uid-1", "web", "web")
	a := api.attester(pod)
	a.now = func() time.Time { return now }
	attest := func(tok, app string) error {
		_, err := a.Attest(context.Background(), tok, "shop", app)
		return err
	}
	for range 3 {
		if err := attest(later, "web"); err != nil {
			t.Fatal(err)
		}
	}
	if api.calls != 1 {
		t.Errorf("%d reviews of one token, want 1", api.calls)
	}
	if err := attest(later, "other"); err == nil {
		t.Error("a cached review admitted another app")
	}
	now = now.Add(45 * time.Second)
	_ = attest(later, "web")
	_ = attest(soon, "web") // reviewed, and cached until it expires (25 s)
	_ = attest(soon, "web")
	if api.calls != 2 {
		t.Errorf("%d reviews, want 2", api.calls)
	}
	now = now.Add(30 * time.Second) // past soon's expiry and later's minute
	_ = attest(soon, "web")
	_ = attest(later, "web")
	if api.calls != 4 {
		t.Errorf("%d reviews, want 4: an expired entry is reviewed again", api.calls)
	}
	api.calls = 0
	bad := fakeToken("bad", now.Add(time.Hour))
	_ = attest(bad, "web")
	_ = attest(bad, "web")
	if api.calls != 2 {
		t.Errorf("%d reviews of a refused token, want 2 (never cached)", api.calls)
	}

	for i := range maxCachedReviews + 10 {
		tok := fakeToken(fmt.Sprint("t", i), now.Add(time.Hour))
		api.reviews[tok] = podAccount("shop", "web", "web-0", "uid-1")
		if err := attest(tok, "web"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(a.reviews); n > maxCachedReviews {
		t.Errorf("%d cached reviews, want at most %d", n, maxCachedReviews)
	}
}

// FuzzAttestToken: whatever a sidecar sends as its token, Attest does not
// panic, sends the API server only JWT-shaped tokens of bounded size, and
// answers anything unknown with a refusal that does not hold the token.
func FuzzAttestToken(f *testing.F) {
	f.Add(fakeToken("a", time.Now().Add(time.Hour)))
	f.Add("s3cret-join-token")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("eyJ.eyJleHAiOjF9.x")
	f.Fuzz(func(t *testing.T, token string) {
		api := &fakeAPI{reviews: map[string]authv1.TokenReviewStatus{}, pods: map[string]*corev1.Pod{}}
		_, err := api.attester().Attest(context.Background(), token, "shop", "orders")
		if !errors.Is(err, controlplane.ErrNotAttested) {
			t.Fatalf("token %q: %v, want a refusal", token, err)
		}
		if api.calls > 0 && (len(token) > maxTokenLen || strings.Count(token, ".") != 2) {
			t.Errorf("token %q reached the API server", token)
		}
		if len(token) > 8 && strings.Contains(err.Error(), token) {
			t.Errorf("the refusal holds the token: %v", err)
		}
		_, _ = expiry(token)
	})
}
