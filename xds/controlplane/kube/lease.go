package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

var leasesGVR = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}

// Defaults of ElectionConfig: client-go's leader election and
// kube-controller-manager use the same.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// ElectionConfig says which Lease the replicas of a control plane compete
// for, and how.
type ElectionConfig struct {
	// Namespace and Name of the Lease (coordination.k8s.io/v1).
	Namespace, Name string
	// Identity is this replica's holderIdentity; it must differ between
	// replicas and between restarts of one (NewIdentity).
	Identity string
	// LeaseDuration is how long the others wait, from when they last saw
	// the Lease change, before they take it from a silent holder.
	LeaseDuration time.Duration
	// RenewDeadline is how long the holder keeps leading without a
	// successful renewal; it must be shorter than LeaseDuration, so the
	// holder stops before anyone else may start.
	RenewDeadline time.Duration
	// RetryPeriod is the time between two attempts to acquire or renew.
	RetryPeriod time.Duration
}

// Validate reports every problem of the config.
func (c ElectionConfig) Validate() error {
	var errs []error
	if c.Namespace == "" || c.Name == "" || c.Identity == "" {
		errs = append(errs, fmt.Errorf("lease %s/%s, identity %q: all three are required", c.Namespace, c.Name, c.Identity))
	}
	if c.LeaseDuration < time.Second {
		errs = append(errs, fmt.Errorf("lease duration %s: at least 1s (the Lease counts whole seconds)", c.LeaseDuration))
	}
	if c.RenewDeadline <= 0 || c.RenewDeadline >= c.LeaseDuration {
		errs = append(errs, fmt.Errorf("renew deadline %s: must be positive and shorter than the lease duration %s", c.RenewDeadline, c.LeaseDuration))
	}
	if c.RetryPeriod <= 0 || c.RetryPeriod >= c.RenewDeadline {
		errs = append(errs, fmt.Errorf("retry period %s: must be positive and shorter than the renew deadline %s", c.RetryPeriod, c.RenewDeadline))
	}
	return errors.Join(errs...)
}

// NewIdentity returns a holder identity for this process: the pod's name
// (the host name) and a random suffix, unique across restarts as
// client-go recommends.
func NewIdentity(host string) string {
	return fmt.Sprintf("%s_%08x", host, rand.Uint32())
}

// leaseStore reads and writes one Lease; updates carry the resourceVersion
// read, so the API server refuses a write over a change not seen
// (optimistic concurrency: a Conflict error).
type leaseStore interface {
	Get(ctx context.Context) (*coordinationv1.Lease, error)
	Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
}

// Elector runs leader election on a coordination.k8s.io Lease among the
// control plane's replicas, as client-go's tools/leaderelection does with
// its LeaseLock (same fields, same timing rules), over the dynamic client:
// client-go's package links the typed clientset (doc.go says why the
// binary must not).
//
// A replica takes the Lease when it is absent, released (no holder) or
// unchanged for LeaseDuration by this replica's clock (the holder's
// renewTime is not compared with our clock: the clocks may differ). The
// holder renews every RetryPeriod and stops leading once RenewDeadline
// passes without a renewal; every write names the resourceVersion it
// read, so two replicas never both win.
//
// Create it with NewElector; Run it once. Leading and Leader are safe for
// concurrent use.
type Elector struct {
	cfg   ElectionConfig
	store leaseStore
	now   func() time.Time
	log   *slog.Logger

	// Owned by Run.
	observedRV   string    // resourceVersion of the Lease last read
	observedTime time.Time // when it was first seen at that version

	mu      sync.Mutex
	holder  string // the holder last seen
	leading bool
}

// NewElector returns an elector on the Lease cfg names, on the API server
// rc reaches.
func NewElector(rc *rest.Config, cfg ElectionConfig, log *slog.Logger) (*Elector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return newElector(cfg, &dynamicLeases{res: client.Resource(leasesGVR).Namespace(cfg.Namespace), name: cfg.Name}, time.Now, log), nil
}

func newElector(cfg ElectionConfig, store leaseStore, now func() time.Time, log *slog.Logger) *Elector {
	return &Elector{cfg: cfg, store: store, now: now, log: log.With("component", "leader-election", "lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)}
}

// Identity is this replica's holder identity.
func (e *Elector) Identity() string { return e.cfg.Identity }

// Leading reports whether this replica holds the Lease.
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// Leader is the holder last seen in the Lease ("" for none or unknown).
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder
}

// Check reads the Lease once, so that a missing permission is a clear
// error at start rather than a campaign failing in the background.
func (e *Elector) Check(ctx context.Context) error {
	_, err := e.store.Get(ctx)
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return fmt.Errorf("get lease %s/%s: the control plane may not (it needs get, create and update on leases in its namespace): %w", e.cfg.Namespace, e.cfg.Name, err)
	}
	return fmt.Errorf("get lease %s/%s: %w", e.cfg.Namespace, e.cfg.Name, err)
}

// Run campaigns for the Lease until ctx ends. Each time this replica wins
// it, lead runs with a context that ends when the leadership is lost (no
// renewal for RenewDeadline) or ctx ends; Run waits for lead to return
// before it campaigns again or returns. When ctx ends while leading, the
// Lease is released so another replica takes over at once.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) {
	for {
		if !e.acquire(ctx) {
			return
		}
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			lead(lctx)
		}()
		e.renew(ctx)
		cancel()
		<-done
		e.setLeading(false)
		if ctx.Err() != nil {
			e.release()
			return
		}
		e.log.Warn("leadership lost: the leader's work stopped; campaigning again")
	}
}

// acquire tries every RetryPeriod (jittered) until this replica holds
// the Lease; false when ctx ended first.
func (e *Elector) acquire(ctx context.Context) bool {
	t := time.NewTimer(0)
	defer t.Stop()
	logged := ""
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if e.tryAcquireOrRenew(ctx) {
			e.setLeading(true)
			e.log.Info("leader elected: this replica holds the lease")
			return true
		}
		if h := e.Leader(); h != logged && h != "" {
			logged = h
			e.log.Info("another replica leads", "leader", h)
		}
		t.Reset(time.Duration(float64(e.cfg.RetryPeriod) * (1 + 0.2*rand.Float64())))
	}
}

// renew renews the Lease every RetryPeriod until a renewal has failed for
// RenewDeadline or ctx ends.
func (e *Elector) renew(ctx context.Context) {
	t := time.NewTimer(e.cfg.RetryPeriod)
	defer t.Stop()
	// Measured from before the write, so this replica stops no later than
	// RenewDeadline after the renewTime the others last saw.
	last := e.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := e.now()
		rctx, cancel := context.WithDeadline(ctx, last.Add(e.cfg.RenewDeadline))
		ok := e.tryAcquireOrRenew(rctx)
		cancel()
		switch h := e.Leader(); {
		case ok:
			last = start
		case h != "" && h != e.cfg.Identity:
			return // another replica holds it now
		case !e.now().Before(last.Add(e.cfg.RenewDeadline)):
			return
		}
		t.Reset(e.cfg.RetryPeriod)
	}
}

// tryAcquireOrRenew makes one attempt to create, take or renew the Lease.
func (e *Elector) tryAcquireOrRenew(ctx context.Context) bool {
	now := e.now()
	mt := metav1.NewMicroTime(now)
	secs := int32((e.cfg.LeaseDuration + time.Second - 1) / time.Second)
	me := e.cfg.Identity
	l, err := e.store.Get(ctx)
	if apierrors.IsNotFound(err) {
		zero := int32(0)
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: e.cfg.Name, Namespace: e.cfg.Namespace},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: &me, LeaseDurationSeconds: &secs,
				AcquireTime: &mt, RenewTime: &mt, LeaseTransitions: &zero,
			},
		}
		created, err := e.store.Create(ctx, l)
		if err != nil {
			if !apierrors.IsAlreadyExists(err) {
				e.log.Warn("lease not created", "err", err)
			}
			return false
		}
		e.observe(created, now)
		return true
	}
	if err != nil {
		e.log.Warn("lease not read", "err", err)
		return false
	}
	e.observe(l, now)
	sp := l.Spec
	holder := deref(sp.HolderIdentity)
	if holder != "" && holder != me {
		d := e.cfg.LeaseDuration
		if sp.LeaseDurationSeconds != nil && *sp.LeaseDurationSeconds > 0 {
			d = time.Duration(*sp.LeaseDurationSeconds) * time.Second
		}
		if now.Before(e.observedTime.Add(d)) {
			return false // held, and renewed within its duration
		}
	}
	next := l.DeepCopy()
	next.Spec.HolderIdentity, next.Spec.LeaseDurationSeconds, next.Spec.RenewTime = &me, &secs, &mt
	if holder != me {
		n := deref(sp.LeaseTransitions) + 1 // a change of holder, as client-go counts it
		next.Spec.AcquireTime, next.Spec.LeaseTransitions = &mt, &n
		e.log.Info("taking the lease", "previous", holder)
	}
	updated, err := e.store.Update(ctx, next)
	if err != nil {
		if !apierrors.IsConflict(err) {
			e.log.Warn("lease not updated", "err", err)
		}
		return false
	}
	e.observe(updated, now)
	return true
}

// observe records the Lease read: its holder, and when it last changed by
// our clock.
func (e *Elector) observe(l *coordinationv1.Lease, now time.Time) {
	if l.ResourceVersion != e.observedRV {
		e.observedRV, e.observedTime = l.ResourceVersion, now
	}
	e.mu.Lock()
	e.holder = deref(l.Spec.HolderIdentity)
	e.mu.Unlock()
}

func (e *Elector) setLeading(v bool) {
	e.mu.Lock()
	e.leading = v
	e.mu.Unlock()
}

// release gives the Lease up, as client-go's ReleaseOnCancel does: no
// holder and a one-second duration, so the next replica takes it at its
// next attempt instead of after LeaseDuration.
func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RenewDeadline)
	defer cancel()
	l, err := e.store.Get(ctx)
	if err != nil || deref(l.Spec.HolderIdentity) != e.cfg.Identity {
		return
	}
	now := metav1.NewMicroTime(e.now())
	one := int32(1)
	next := l.DeepCopy()
	next.Spec.HolderIdentity, next.Spec.LeaseDurationSeconds = nil, &one
	next.Spec.AcquireTime, next.Spec.RenewTime = &now, &now
	if _, err := e.store.Update(ctx, next); err != nil {
		e.log.Warn("lease not released: the next leader waits for it to expire", "err", err)
		return
	}
	e.mu.Lock()
	e.holder = ""
	e.mu.Unlock()
	e.log.Info("lease released")
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// dynamicLeases is a leaseStore over the dynamic client.
type dynamicLeases struct {
	res  dynamic.ResourceInterface
	name string
}

func (d *dynamicLeases) Get(ctx context.Context) (*coordinationv1.Lease, error) {
	u, err := d.res.Get(ctx, d.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return fromUnstructuredLease(u)
}

func (d *dynamicLeases) Create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	u, err := toUnstructuredLease(l)
	if err != nil {
		return nil, err
	}
	out, err := d.res.Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return fromUnstructuredLease(out)
}

func (d *dynamicLeases) Update(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	u, err := toUnstructuredLease(l)
	if err != nil {
		return nil, err
	}
	out, err := d.res.Update(ctx, u, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	return fromUnstructuredLease(out)
}

func toUnstructuredLease(l *coordinationv1.Lease) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(l)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion("coordination.k8s.io/v1")
	u.SetKind("Lease")
	return u, nil
}

func fromUnstructuredLease(u *unstructured.Unstructured) (*coordinationv1.Lease, error) {
	var l coordinationv1.Lease
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &l); err != nil {
		return nil, fmt.Errorf("lease: %w", err)
	}
	return &l, nil
}

// OwnNamespace is the namespace the control plane runs in: $POD_NAMESPACE
// (the downward API), else the service account's namespace file of an
// in-cluster pod, else "default".
func OwnNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}
