package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/skeinmesh/skein/identity"
)

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// Annotations of the CA Secret.
const (
	// AnnotationRotate asks the leader for a rotation: "issuer" (a new
	// issuing CA under the same root) or "root" (a new root and issuer;
	// the old root stays trusted for identity.RootOverlap). The leader
	// removes it when the rotation is stored.
	AnnotationRotate = "skein.io/rotate"
	// AnnotationRotated records the leader's last rotation: what, when,
	// and which replica.
	AnnotationRotated = "skein.io/rotated"
)

// caCheckInterval is how often the leader checks whether a rotation is
// due when nothing else wakes it.
const caCheckInterval = time.Minute

// CAStore keeps the control plane's CA in a Secret of its namespace, so
// that every replica signs with the same CA: the Secret's keys are the
// CA directory's files (identity.CAFileNames). Every replica loads it and
// watches it; the leader alone changes it (rotations), with the
// resourceVersion it read, so a write over a change it has not seen is
// refused.
//
// Create it with NewCAStore, Load it, then Run it; Lead runs while this
// replica leads.
type CAStore struct {
	res      dynamic.ResourceInterface
	ns, name string
	identity string // the replica's, recorded with a rotation
	log      *slog.Logger

	ca   *identity.CA
	kick chan struct{} // the Secret changed: the leader looks again

	mu sync.Mutex
	rv string // resourceVersion of the Secret the CA holds
}

// NewCAStore returns the store of the Secret ns/name on the API server rc
// reaches; identity names this replica in AnnotationRotated.
func NewCAStore(rc *rest.Config, ns, name, identity string, log *slog.Logger) (*CAStore, error) {
	client, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return newCAStore(client.Resource(secretsGVR).Namespace(ns), ns, name, identity, log), nil
}

func newCAStore(res dynamic.ResourceInterface, ns, name, id string, log *slog.Logger) *CAStore {
	return &CAStore{res: res, ns: ns, name: name, identity: id, log: log.With("component", "ca-secret", "secret", ns+"/"+name), kick: make(chan struct{}, 1)}
}

// Load returns the CA of the Secret, creating the Secret with a new CA of
// trust domain td when there is none. Replicas starting together may all
// try: create is atomic, the API server keeps one, and the others load
// it. A Secret of another trust domain is an error.
func (s *CAStore) Load(ctx context.Context, td spiffeid.TrustDomain) (*identity.CA, error) {
	for range 3 {
		u, err := s.res.Get(ctx, s.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			ca, err := identity.NewCA(td, nil)
			if err != nil {
				return nil, err
			}
			files, err := ca.Files()
			if err != nil {
				return nil, err
			}
			created, err := s.res.Create(ctx, s.secret(files, nil), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue // another replica was first: load its CA
			}
			if err != nil {
				return nil, s.explain("create", err)
			}
			s.ca, s.rv = ca, created.GetResourceVersion()
			s.log.Info("ca created", "trust_domain", ca.TrustDomain().String())
			return ca, nil
		}
		if err != nil {
			return nil, s.explain("get", err)
		}
		files, err := secretFiles(u)
		if err != nil {
			return nil, fmt.Errorf("ca secret %s/%s: %w", s.ns, s.name, err)
		}
		ca, err := identity.FromFiles(files, nil)
		if err != nil {
			return nil, fmt.Errorf("ca secret %s/%s: %w", s.ns, s.name, err)
		}
		if !td.IsZero() && ca.TrustDomain() != td {
			return nil, fmt.Errorf("ca secret %s/%s: trust domain is %q, not %q (delete the Secret to start a new trust domain)", s.ns, s.name, ca.TrustDomain(), td)
		}
		s.ca, s.rv = ca, u.GetResourceVersion()
		s.log.Info("ca loaded", "trust_domain", ca.TrustDomain().String())
		return ca, nil
	}
	return nil, fmt.Errorf("ca secret %s/%s: created and deleted again while loading", s.ns, s.name)
}

// explain wraps an API error, naming the permission a refusal lacks.
func (s *CAStore) explain(verb string, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return fmt.Errorf("%s secret %s/%s: the control plane may not (it needs get, list, watch, create and update on this Secret): %w", verb, s.ns, s.name, err)
	}
	return fmt.Errorf("%s secret %s/%s: %w", verb, s.ns, s.name, err)
}

// secret is the Secret holding files, with annotations.
func (s *CAStore) secret(files map[string][]byte, annotations map[string]string) *unstructured.Unstructured {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.name, Namespace: s.ns, Annotations: annotations,
			Labels: map[string]string{"app.kubernetes.io/part-of": "skein", "app.kubernetes.io/component": "ca"},
		},
		Type: corev1.SecretTypeOpaque,
		Data: files,
	}
	m, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(sec) // a Secret always converts
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion("v1")
	u.SetKind("Secret")
	return u
}

// secretFiles reads the CA's files out of a Secret.
func secretFiles(u *unstructured.Unstructured) (map[string][]byte, error) {
	var sec corev1.Secret
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &sec); err != nil {
		return nil, err
	}
	return sec.Data, nil
}

// Run watches the Secret until ctx ends: each change is loaded into the
// CA, so every replica signs with what the leader stored. A Secret that
// does not load (damaged, another trust domain) is logged and the last
// good CA keeps signing; a deleted one is recreated by the leader.
func (s *CAStore) Run(ctx context.Context) error {
	sel := fields.OneTermEqualSelector("metadata.name", s.name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return s.res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return s.res.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(lw, &unstructured.Unstructured{}, cache.SharedIndexInformerOptions{
		ObjectDescription: "secret " + s.ns + "/" + s.name,
	})
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.apply(obj) },
		UpdateFunc: func(_, obj any) { s.apply(obj) },
		DeleteFunc: func(any) {
			s.log.Warn("ca secret deleted: the last CA keeps signing; the leader stores it again")
			s.poke()
		},
	})
	inf.RunWithContext(ctx)
	return nil
}

// apply loads a listed or watched Secret into the CA.
func (s *CAStore) apply(obj any) {
	defer s.poke()
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.GetResourceVersion() == s.rv {
		return
	}
	files, err := secretFiles(u)
	if err == nil {
		err = s.ca.SetFiles(files)
	}
	if err != nil {
		s.log.Error("ca secret refused; the last good CA keeps signing", "resource_version", u.GetResourceVersion(), "err", err)
		return
	}
	s.rv = u.GetResourceVersion()
	s.log.Info("ca loaded from the secret", "resource_version", s.rv, "issuer_expires", s.ca.Issuer().NotAfter, "roots", len(s.ca.Roots()))
}

func (s *CAStore) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Lead does the work that must happen once, while this replica leads:
// the rotations AnnotationRotate asks for, those due (identity's
// IssuerDue and RootDue), and storing the CA again if the Secret was
// deleted. It looks at every change of the Secret and every minute, until
// ctx ends.
func (s *CAStore) Lead(ctx context.Context) {
	t := time.NewTicker(caCheckInterval)
	defer t.Stop()
	for {
		if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("ca secret not reconciled; trying again at its next change or in a minute", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
		}
	}
}

// reconcile makes one pass of Lead's work.
func (s *CAStore) reconcile(ctx context.Context) error {
	u, err := s.res.Get(ctx, s.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		files, err := s.ca.Files()
		if err != nil {
			return err
		}
		if _, err := s.res.Create(ctx, s.secret(files, nil), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return s.explain("create", err)
		}
		s.log.Warn("ca secret stored again after it was deleted")
		return nil
	}
	if err != nil {
		return s.explain("get", err)
	}
	files, err := secretFiles(u)
	if err != nil {
		return err
	}
	// Rotate what is stored, not what this replica holds: they differ
	// only while a change is on its way here, and then the write below
	// fails on the resourceVersion.
	ca, err := identity.FromFiles(files, nil)
	if err != nil {
		return fmt.Errorf("the secret does not load, so it is not rotated: %w", err)
	}
	asked := u.GetAnnotations()[AnnotationRotate]
	what := asked
	switch {
	case asked == "root", asked == "issuer":
	case asked != "":
		s.log.Error("ca rotation refused: want issuer or root", "annotation", AnnotationRotate, "value", asked)
		what = ""
	case ca.RootDue():
		what = "root"
	case ca.IssuerDue():
		what = "issuer"
	default:
		return nil
	}
	switch what {
	case "root":
		err = ca.RotateRoot()
	case "issuer":
		err = ca.RotateIssuer()
	}
	if err != nil {
		return err
	}
	next, err := ca.Files()
	if err != nil {
		return err
	}
	ann := maps.Clone(u.GetAnnotations())
	delete(ann, AnnotationRotate)
	if what != "" {
		if ann == nil {
			ann = map[string]string{}
		}
		ann[AnnotationRotated] = what + " " + time.Now().UTC().Format(time.RFC3339) + " by " + s.identity
	}
	out := s.secret(next, ann)
	out.SetResourceVersion(u.GetResourceVersion())
	out.SetLabels(u.GetLabels())
	if _, err := s.res.Update(ctx, out, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			return errors.New("the secret changed meanwhile: looking again")
		}
		return s.explain("update", err)
	}
	if what != "" {
		reason := "asked by " + AnnotationRotate
		if asked == "" {
			reason = "due"
		}
		s.log.Info("ca rotated", "what", what, "reason", reason, "issuer_expires", ca.Issuer().NotAfter)
	}
	return nil
}
