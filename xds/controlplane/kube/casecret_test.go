package kube

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/skeinmesh/skein/identity"
)

// fakeSecrets is one namespace's Secrets in memory with the API server's
// rules for what a CAStore calls (Get, Create, Update, Delete):
// AlreadyExists, NotFound, and Conflict on a stale resourceVersion. The
// embedded interface is nil: the watch (List, Watch) is the e2e test's.
type fakeSecrets struct {
	dynamic.ResourceInterface
	mu   sync.Mutex
	objs map[string]*unstructured.Unstructured
	rv   int
	// intercept, when set, runs once at the next Create or Update before
	// its check: another writer between a read and a write.
	intercept func()
}

var secretGR = schema.GroupResource{Resource: "secrets"}

func (f *fakeSecrets) Get(_ context.Context, name string, _ metav1.GetOptions, _ ...string) (*unstructured.Unstructured, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.objs[name]; ok {
		return u.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(secretGR, name)
}

func (f *fakeSecrets) Create(_ context.Context, u *unstructured.Unstructured, _ metav1.CreateOptions, _ ...string) (*unstructured.Unstructured, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fn := f.intercept; fn != nil {
		f.intercept = nil
		f.mu.Unlock()
		fn()
		f.mu.Lock()
	}
	if _, ok := f.objs[u.GetName()]; ok {
		return nil, apierrors.NewAlreadyExists(secretGR, u.GetName())
	}
	return f.store(u), nil
}

func (f *fakeSecrets) Update(_ context.Context, u *unstructured.Unstructured, _ metav1.UpdateOptions, _ ...string) (*unstructured.Unstructured, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fn := f.intercept; fn != nil {
		f.intercept = nil
		f.mu.Unlock()
		fn()
		f.mu.Lock()
	}
	old, ok := f.objs[u.GetName()]
	if !ok {
		return nil, apierrors.NewNotFound(secretGR, u.GetName())
	}
	if u.GetResourceVersion() != old.GetResourceVersion() {
		return nil, apierrors.NewConflict(secretGR, u.GetName(), nil)
	}
	return f.store(u), nil
}

func (f *fakeSecrets) Delete(_ context.Context, name string, _ metav1.DeleteOptions, _ ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objs, name)
	return nil
}

func (f *fakeSecrets) store(u *unstructured.Unstructured) *unstructured.Unstructured {
	f.rv++
	c := u.DeepCopy()
	c.SetResourceVersion(strconv.Itoa(f.rv))
	f.objs[c.GetName()] = c
	return c.DeepCopy()
}

func newFakeCAStore(t *testing.T) (*CAStore, *fakeSecrets) {
	t.Helper()
	f := &fakeSecrets{objs: map[string]*unstructured.Unstructured{}}
	return newCAStore(f, "skein-system", "skein-ca", "replica-1", slog.New(slog.NewTextHandler(io.Discard, nil))), f
}

var publicTD = spiffeid.RequireTrustDomainFromString("public")

// TestCAStoreLoadCreatesOnce: two replicas starting together both find
// no Secret and both create one: the API server keeps the first, and the
// second loads it; a third of another trust domain is refused.
func TestCAStoreLoadCreatesOnce(t *testing.T) {
	ctx := context.Background()
	s2, c := newFakeCAStore(t)
	s1 := newCAStore(c, "skein-system", "skein-ca", "replica-2", s2.log)
	var ca1 *identity.CA
	c.intercept = func() { // s1 creates between s2's Get and its Create
		var err error
		if ca1, err = s1.Load(ctx, publicTD); err != nil {
			t.Error(err)
		}
	}
	ca2, err := s2.Load(ctx, publicTD)
	if err != nil {
		t.Fatal(err)
	}
	if ca1 == nil || c.rv != 1 {
		t.Fatalf("the first replica's CA %v, %d writes; want one Secret written once", ca1, c.rv)
	}
	if !ca1.Roots()[0].Equal(ca2.Roots()[0]) || !ca1.Issuer().Equal(ca2.Issuer()) {
		t.Error("the second replica loaded another CA than the first created")
	}
	s3 := newCAStore(c, "skein-system", "skein-ca", "replica-3", s1.log)
	if _, err := s3.Load(ctx, spiffeid.RequireTrustDomainFromString("other.org")); err == nil || !strings.Contains(err.Error(), `trust domain is "public", not "other.org"`) {
		t.Errorf("Load with another trust domain: %v", err)
	}
}

// TestCAStoreLeaderRotates: the leader's pass rotates what the annotation
// asks for, removes it and records the rotation; an unknown value is
// refused and removed; a deleted Secret is stored again with the same CA;
// nothing due, nothing written.
func TestCAStoreLeaderRotates(t *testing.T) {
	ctx := context.Background()
	s, f := newFakeCAStore(t)
	ca, err := s.Load(ctx, publicTD)
	if err != nil {
		t.Fatal(err)
	}
	annotate := func(v string) {
		u, err := s.res.Get(ctx, s.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		u.SetAnnotations(map[string]string{AnnotationRotate: v})
		if _, err := s.res.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() (root, issuer string, ann map[string]string) {
		u, err := s.res.Get(ctx, s.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f, err := secretFiles(u)
		if err != nil {
			t.Fatal(err)
		}
		return string(f["root.crt"]), string(f["issuer.crt"]), u.GetAnnotations()
	}
	root0, issuer0, _ := stored()

	if err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if r, i, ann := stored(); r != root0 || i != issuer0 || ann[AnnotationRotated] != "" {
		t.Error("a pass with nothing asked or due changed the Secret")
	}

	annotate("issuer")
	if err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	r, i, ann := stored()
	if r != root0 || i == issuer0 || ann[AnnotationRotate] != "" || !strings.HasPrefix(ann[AnnotationRotated], "issuer ") || !strings.HasSuffix(ann[AnnotationRotated], " by replica-1") {
		t.Errorf("issuer rotation: root kept %v, issuer changed %v, annotations %v", r == root0, i != issuer0, ann)
	}

	annotate("everything")
	if err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if r2, i2, ann := stored(); r2 != r || i2 != i || ann[AnnotationRotate] != "" {
		t.Errorf("an unknown rotation value: root or issuer changed, or annotations %v", ann)
	}

	// A change between the leader's read and its write: the write is
	// refused, nothing is lost, and the next pass (the change's watch
	// event) does the rotation asked meanwhile.
	annotate("issuer")
	f.intercept = func() { annotate("root") }
	if err := s.reconcile(ctx); err == nil || !strings.Contains(err.Error(), "changed meanwhile") {
		t.Fatalf("a pass over a concurrent change: %v, want it refused", err)
	}
	if r2, i2, ann := stored(); r2 != r || i2 != i || ann[AnnotationRotate] != "root" {
		t.Fatalf("after a refused pass: root or issuer changed, or annotations %v", ann)
	}

	annotate("root")
	if err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	r3, _, _ := stored()
	if r3 == r {
		t.Error("root rotation kept the root")
	}

	if err := s.res.Delete(ctx, s.name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.res.Get(ctx, s.name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Fatal("the leader did not store the deleted Secret again")
	}
	// It stores the CA this replica signs with (the watch, not run here,
	// would have loaded the rotations into it).
	if r4, _, _ := stored(); r4 != string(identityRootPEM(t, ca)) {
		t.Error("the Secret stored again is not the replica's CA")
	}
}

func identityRootPEM(t *testing.T, ca interface {
	Files() (map[string][]byte, error)
}) []byte {
	t.Helper()
	f, err := ca.Files()
	if err != nil {
		t.Fatal(err)
	}
	return f["root.crt"]
}
