package kube

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/skeinmesh/skein/inject"
	"github.com/skeinmesh/skein/xds/controlplane"
)

var tokenReviewsGVR = schema.GroupVersionResource{Group: "authentication.k8s.io", Version: "v1", Resource: "tokenreviews"}

const (
	// The keys of TokenReview's status.user.extra naming the pod a
	// projected token is bound to (k8s.io/apiserver's serviceaccount
	// PodNameKey and PodUIDKey).
	podNameKey = "authentication.kubernetes.io/pod-name"
	podUIDKey  = "authentication.kubernetes.io/pod-uid"
	// saPrefix starts a service account's user name:
	// system:serviceaccount:<namespace>:<name>.
	saPrefix = "system:serviceaccount:"

	// reviewCacheTTL is how long a successful review is reused for the
	// same token (never past the token's expiry): a sidecar retrying, or
	// several asking at once, costs the API server one review.
	reviewCacheTTL = time.Minute
	// maxCachedReviews bounds that cache; when it is full of live
	// entries, further reviews are not cached.
	maxCachedReviews = 10000
	// maxTokenLen: a projected token is a JWT of about a kilobyte.
	maxTokenLen = 16 << 10
	// reviewQPS and reviewBurst rate-limit the attester's requests to the
	// API server (TokenReviews, pod GETs) on a client of its own: above
	// client-go's default of 5 per second, so that a rollout of many pods
	// gets its SVIDs in seconds, and bounded, so that no flood of sign
	// requests becomes a flood on the API server.
	reviewQPS   = 50
	reviewBurst = 100
)

// Attester proves the pod a sidecar runs in, for the control plane's CA
// (controlplane.Attester), as Dapr's Sentry and istiod do: the sidecar
// presents the projected service-account token the injector mounts
// (audience inject.TokenAudience); the API server's TokenReview says
// whose it is and which pod it is bound to; that pod, in the Watcher's
// cache (or fetched when the cache does not have it yet), must be the
// same pod (its UID: not one deleted and created again under its name),
// run as that service account, be a Dapr pod, and run the app asked for,
// by the rule the endpoints are built with (dapr.io/app-id, else the
// sidecar's --app-id, else the pod's name), in the namespace asked for.
//
// Safe for concurrent use.
type Attester struct {
	audience string
	pods     cache.Store // the Watcher's pods, as transformPod keeps them
	now      func() time.Time
	// The API server, seams for tests: a TokenReview of a token for
	// audience, and a GET of a pod (nil, nil when there is none).
	tokenReview func(ctx context.Context, token, audience string) (authv1.TokenReviewStatus, error)
	getPod      func(ctx context.Context, namespace, name string) (*corev1.Pod, error)

	mu      sync.Mutex
	reviews map[[sha256.Size]byte]reviewed // by the token's hash: never the token
}

// reviewed is what a successful TokenReview said of a token.
type reviewed struct {
	namespace, serviceAccount, pod string
	uid                            types.UID
	until                          time.Time // cached until
}

// NewAttester makes the attester of the API server cfg reaches; w is the
// watcher whose pod cache it reads.
func NewAttester(cfg *rest.Config, w *Watcher) (*Attester, error) {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = reviewQPS, reviewBurst
	client, err := dynamic.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	a := newAttester(w.pods.GetStore())
	a.tokenReview = func(ctx context.Context, token, audience string) (authv1.TokenReviewStatus, error) {
		return tokenReview(ctx, client, token, audience)
	}
	a.getPod = func(ctx context.Context, ns, name string) (*corev1.Pod, error) {
		u, err := client.Resource(podsGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, apiError("get pod "+ns+"/"+name, "get", "pods", err)
		}
		p, err := transformPod(u)
		if err != nil {
			return nil, fmt.Errorf("pod %s/%s: %w", ns, name, err)
		}
		return p.(*corev1.Pod), nil
	}
	return a, nil
}

func newAttester(pods cache.Store) *Attester {
	return &Attester{audience: inject.TokenAudience, pods: pods, now: time.Now, reviews: map[[sha256.Size]byte]reviewed{}}
}

// Check reviews a token that is no token, so that a control plane that
// may not create TokenReviews fails at start, saying so, rather than
// refusing every sidecar later.
func (a *Attester) Check(ctx context.Context) error {
	st, err := a.tokenReview(ctx, "not-a-token", a.audience)
	if err != nil {
		return err
	}
	if st.Authenticated {
		return fmt.Errorf("token review: the API server authenticated a made-up token")
	}
	return nil
}

// tokenReview asks the API server whose token is, for audience.
func tokenReview(ctx context.Context, client dynamic.Interface, token, audience string) (authv1.TokenReviewStatus, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&authv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authv1.TokenReviewSpec{Token: token, Audiences: []string{audience}},
	})
	if err != nil {
		return authv1.TokenReviewStatus{}, err
	}
	u, err := client.Resource(tokenReviewsGVR).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	if err != nil {
		return authv1.TokenReviewStatus{}, apiError("token review", "create", "authentication.k8s.io tokenreviews", err)
	}
	var tr authv1.TokenReview
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &tr); err != nil {
		return authv1.TokenReviewStatus{}, fmt.Errorf("token review: answer: %w", err)
	}
	return tr.Status, nil
}

// apiError names the permission a refused request lacked. The error of a
// request never holds the token: client-go does not put bodies in errors.
func apiError(op, verb, resource string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s: the control plane may not %s %s (see its RBAC in docs/kubernetes.md): %w", op, verb, resource, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Attest checks that token proves a pod that runs app appID in namespace
// (controlplane.Attester). The token is never logged nor kept: the cache
// of reviews is keyed by its SHA-256.
func (a *Attester) Attest(ctx context.Context, token, namespace, appID string) (controlplane.Workload, error) {
	if !jwtShaped(token) {
		return controlplane.Workload{}, refuse("it is not a service-account token (a JWT)")
	}
	rv, err := a.review(ctx, token)
	if err != nil {
		return controlplane.Workload{}, err
	}
	wl := controlplane.Workload{Namespace: rv.namespace, Pod: rv.pod, ServiceAccount: rv.serviceAccount}
	if rv.namespace != namespace {
		return wl, refuse("the token is of namespace %s, the SPIFFE ID is of namespace %s", rv.namespace, namespace)
	}
	pod, err := a.pod(ctx, rv)
	if err != nil {
		return wl, err
	}
	return wl, admit(rv, pod, appID)
}

// review returns what the API server says of token: a cached successful
// review, or a new one.
func (a *Attester) review(ctx context.Context, token string) (reviewed, error) {
	key := sha256.Sum256([]byte(token))
	now := a.now()
	a.mu.Lock()
	rv, ok := a.reviews[key]
	a.mu.Unlock()
	if ok && now.Before(rv.until) {
		return rv, nil
	}
	st, err := a.tokenReview(ctx, token, a.audience)
	if err != nil {
		return reviewed{}, err
	}
	rv, err = fromReview(st, a.audience)
	if err != nil {
		return reviewed{}, err
	}
	// The token's expiry, from its claims: authentic, since the API
	// server has just verified its signature.
	exp, ok := expiry(token)
	if !ok {
		return rv, nil
	}
	rv.until = now.Add(reviewCacheTTL)
	if exp.Before(rv.until) {
		rv.until = exp
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.reviews) >= maxCachedReviews {
		for k, v := range a.reviews {
			if !now.Before(v.until) {
				delete(a.reviews, k)
			}
		}
	}
	if len(a.reviews) < maxCachedReviews {
		a.reviews[key] = rv
	}
	return rv, nil
}

// fromReview reads a TokenReview's status: the token must be authenticated
// for audience, a service account's, and bound to a pod.
func fromReview(st authv1.TokenReviewStatus, audience string) (reviewed, error) {
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return reviewed{}, refuse("the API server does not accept it for audience %s: %s", audience, msg)
	}
	// An authenticator that ignores audiences may still say yes; the
	// audiences it answers for must include ours (TokenReviewStatus).
	if !slices.Contains(st.Audiences, audience) {
		return reviewed{}, refuse("it is not for audience %s (its audiences: %v)", audience, st.Audiences)
	}
	rest, isSA := strings.CutPrefix(st.User.Username, saPrefix)
	ns, sa, _ := strings.Cut(rest, ":")
	if !isSA || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return reviewed{}, refuse("it is not a service account's token (user %q)", st.User.Username)
	}
	names, uids := st.User.Extra[podNameKey], st.User.Extra[podUIDKey]
	if len(names) != 1 || len(uids) != 1 || names[0] == "" || uids[0] == "" {
		return reviewed{}, refuse("service account %s/%s's token is bound to no pod (a projected token is; a Secret's, or a TokenRequest's without boundObjectRef, is not)", ns, sa)
	}
	return reviewed{namespace: ns, serviceAccount: sa, pod: names[0], uid: types.UID(uids[0])}, nil
}

// pod is the pod the token is bound to: the cached one if it is that pod
// (its UID), else the API server's (a pod created a moment ago, or
// created again under the same name, may not be in the cache yet). Nil
// when there is none.
func (a *Attester) pod(ctx context.Context, rv reviewed) (*corev1.Pod, error) {
	if o, ok, _ := a.pods.GetByKey(rv.namespace + "/" + rv.pod); ok {
		if p, ok := o.(*corev1.Pod); ok && p.UID == rv.uid {
			return p, nil
		}
	}
	return a.getPod(ctx, rv.namespace, rv.pod)
}

// admit decides whether pod, the pod the token of rv is bound to (nil:
// none), runs app app. Namespaces are already the same.
func admit(rv reviewed, pod *corev1.Pod, app string) error {
	name := rv.namespace + "/" + rv.pod
	switch {
	case pod == nil:
		return refuse("pod %s does not exist (deleted)", name)
	case pod.UID != rv.uid:
		return refuse("pod %s is not the pod the token is bound to (uid %s, the token's %s): it was deleted and created again", name, pod.UID, rv.uid)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return refuse("pod %s has finished (%s)", name, pod.Status.Phase)
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default" // as the ServiceAccount admission plugin sets it
	}
	if sa != rv.serviceAccount {
		return refuse("pod %s runs as service account %s, the token is %s's", name, sa, rv.serviceAccount)
	}
	if pod.Annotations[inject.AnnotationEnabled] != "true" {
		return refuse("pod %s is not a Dapr pod (%s is not \"true\")", name, inject.AnnotationEnabled)
	}
	var daprd *corev1.Container
	if len(pod.Spec.Containers) == 1 {
		daprd = &pod.Spec.Containers[0]
	}
	if got := appID(pod, daprd); got != app {
		return refuse("pod %s runs app %q, not %q", name, got, app)
	}
	return nil
}

// refuse is an attestation's refusal: controlplane.ErrNotAttested and why.
func refuse(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{controlplane.ErrNotAttested}, a...)...)
}

// jwtShaped reports whether token looks like a JWT (three base64url
// parts, bounded): anything else, such as a join token sent by mistake,
// is refused without asking the API server.
func jwtShaped(token string) bool {
	if len(token) > maxTokenLen || strings.Count(token, ".") != 2 {
		return false
	}
	for _, part := range strings.Split(token, ".") {
		if part == "" || strings.Trim(part, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=") != "" {
			return false
		}
	}
	return true
}

// expiry reads a JWT's exp claim without verifying it: only for a token
// the API server has verified.
func expiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || c.Exp <= 0 {
		return time.Time{}, false
	}
	return time.Unix(c.Exp, 0), true
}
