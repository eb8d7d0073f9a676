package kube

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fakeLeases is one Lease in memory with the API server's rules: Create
// of an existing object is AlreadyExists, Update with a stale
// resourceVersion is a Conflict. Each replica reaches it through a
// replicaLeases that a test can cut off (a dead or partitioned replica).
type fakeLeases struct {
	mu    sync.Mutex
	lease *coordinationv1.Lease
	rv    int
}

var leaseGR = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

func (f *fakeLeases) get() *coordinationv1.Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lease == nil {
		return nil
	}
	return f.lease.DeepCopy()
}

type replicaLeases struct {
	f   *fakeLeases
	mu  sync.Mutex
	cut bool
}

func (r *replicaLeases) setCut(v bool) {
	r.mu.Lock()
	r.cut = v
	r.mu.Unlock()
}

func (r *replicaLeases) down() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cut {
		return apierrors.NewServiceUnavailable("cut off")
	}
	return nil
}

func (r *replicaLeases) Get(context.Context) (*coordinationv1.Lease, error) {
	if err := r.down(); err != nil {
		return nil, err
	}
	if l := r.f.get(); l != nil {
		return l, nil
	}
	return nil, apierrors.NewNotFound(leaseGR, "skein")
}

func (r *replicaLeases) Create(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if err := r.down(); err != nil {
		return nil, err
	}
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	if r.f.lease != nil {
		return nil, apierrors.NewAlreadyExists(leaseGR, l.Name)
	}
	r.f.rv++
	r.f.lease = l.DeepCopy()
	r.f.lease.ResourceVersion = strconv.Itoa(r.f.rv)
	return r.f.lease.DeepCopy(), nil
}

func (r *replicaLeases) Update(_ context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if err := r.down(); err != nil {
		return nil, err
	}
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	if r.f.lease == nil {
		return nil, apierrors.NewNotFound(leaseGR, l.Name)
	}
	if l.ResourceVersion != r.f.lease.ResourceVersion {
		return nil, apierrors.NewConflict(leaseGR, l.Name, nil)
	}
	r.f.rv++
	r.f.lease = l.DeepCopy()
	r.f.lease.ResourceVersion = strconv.Itoa(r.f.rv)
	return r.f.lease.DeepCopy(), nil
}

// replica is one elector under test and what its lead function saw.
type replica struct {
	e     *Elector
	store *replicaLeases
	mu    sync.Mutex
	terms []term // each time it led
}

type term struct{ start, end time.Time }

func (r *replica) lead(ctx context.Context) {
	r.mu.Lock()
	r.terms = append(r.terms, term{start: time.Now()})
	i := len(r.terms) - 1
	r.mu.Unlock()
	<-ctx.Done()
	r.mu.Lock()
	r.terms[i].end = time.Now()
	r.mu.Unlock()
}

func (r *replica) termsCopy() []term {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]term(nil), r.terms...)
}

var testElection = ElectionConfig{Namespace: "skein-system", Name: "skein", LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}

func newReplicas(f *fakeLeases, names ...string) []*replica {
	var out []*replica
	for _, n := range names {
		cfg := testElection
		cfg.Identity = n
		st := &replicaLeases{f: f}
		out = append(out, &replica{e: newElector(cfg, st, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil))), store: st})
	}
	return out
}

// run starts each replica's Run; the returned func cancels them one by
// one (clean shutdown) and waits.
func run(rs []*replica) (cancels []context.CancelFunc, wait func()) {
	var wg sync.WaitGroup
	for _, r := range rs {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		wg.Go(func() { r.e.Run(ctx, r.lead) })
	}
	return cancels, func() {
		for _, c := range cancels {
			c()
		}
		wg.Wait()
	}
}

func holderOf(f *fakeLeases) (string, int32) {
	l := f.get()
	if l == nil {
		return "", -1
	}
	return deref(l.Spec.HolderIdentity), deref(l.Spec.LeaseTransitions)
}

// TestElectionOneLeader: replicas started together: exactly one leads,
// the Lease names it, and the others keep out while it renews.
func TestElectionOneLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeLeases{}
		rs := newReplicas(f, "a", "b", "c")
		_, stop := run(rs)
		time.Sleep(time.Minute) // four lease durations of renewals
		synctest.Wait()
		holder, transitions := holderOf(f)
		var leaders []string
		for _, r := range rs {
			if r.e.Leading() {
				leaders = append(leaders, r.e.Identity())
			}
			if n := len(r.termsCopy()); r.e.Leading() != (n == 1) {
				t.Errorf("%s: leading %v after %d terms", r.e.Identity(), r.e.Leading(), n)
			}
			if got := r.e.Leader(); got != holder {
				t.Errorf("%s sees leader %q, the Lease says %q", r.e.Identity(), got, holder)
			}
		}
		if len(leaders) != 1 || leaders[0] != holder || transitions != 0 {
			t.Errorf("leaders %v, lease holder %q with %d transitions; want one leader, the holder, 0 transitions", leaders, holder, transitions)
		}
		stop()
	})
}

// TestElectionFailover: the leader dies without releasing (cut off from
// the API server): it stops leading within RenewDeadline, and another
// replica takes the Lease only after LeaseDuration, so the two terms never
// overlap; the Lease counts one transition.
func TestElectionFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeLeases{}
		rs := newReplicas(f, "a", "b")
		_, stop := run(rs)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		first, _ := holderOf(f)
		var old, other *replica
		for _, r := range rs {
			if r.e.Identity() == first {
				old = r
			} else {
				other = r
			}
		}
		if old == nil {
			t.Fatalf("no leader after 5s (holder %q)", first)
		}
		cut := time.Now()
		old.store.setCut(true)
		time.Sleep(testElection.LeaseDuration + 2*testElection.RetryPeriod)
		synctest.Wait()
		holder, transitions := holderOf(f)
		if holder != other.e.Identity() || transitions != 1 {
			t.Fatalf("after the leader died: holder %q with %d transitions, want %q with 1", holder, transitions, other.e.Identity())
		}
		ot, nt := old.termsCopy(), other.termsCopy()
		if len(ot) != 1 || ot[0].end.IsZero() || len(nt) != 1 {
			t.Fatalf("terms: old %v, new %v; want the old one ended and one new one", ot, nt)
		}
		if stopped := ot[0].end.Sub(cut); stopped > testElection.RenewDeadline {
			t.Errorf("the cut-off leader led %s after its last renewal, want at most the renew deadline %s", stopped, testElection.RenewDeadline)
		}
		if !ot[0].end.Before(nt[0].start) {
			t.Errorf("terms overlap: the old leader stopped at %s, the new one started at %s", ot[0].end.Sub(cut), nt[0].start.Sub(cut))
		}
		if old.e.Leading() {
			t.Error("the cut-off replica still says it leads")
		}
		// Back on the network, it follows.
		old.store.setCut(false)
		time.Sleep(testElection.LeaseDuration)
		synctest.Wait()
		if h, _ := holderOf(f); h != other.e.Identity() || old.e.Leading() || old.e.Leader() != h {
			t.Errorf("after the old leader came back: holder %q, it leads %v, sees %q", h, old.e.Leading(), old.e.Leader())
		}
		stop()
	})
}

// TestElectionReleaseOnShutdown: a leader stopped cleanly releases the
// Lease, and the next replica takes it at its next attempt rather than
// after LeaseDuration.
func TestElectionReleaseOnShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeLeases{}
		rs := newReplicas(f, "a", "b")
		cancels, stop := run(rs)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		first, _ := holderOf(f)
		i := 0
		if first == "b" {
			i = 1
		}
		cancels[i]()
		synctest.Wait()
		if h, _ := holderOf(f); h != "" {
			t.Fatalf("after a clean stop the lease is held by %q, want released", h)
		}
		start := time.Now()
		for h, _ := holderOf(f); h == ""; h, _ = holderOf(f) {
			time.Sleep(100 * time.Millisecond)
		}
		if took := time.Since(start); took > testElection.RetryPeriod*6/5 {
			t.Errorf("the next replica took the released lease after %s, want within a jittered retry period", took)
		}
		if h, n := holderOf(f); h != rs[1-i].e.Identity() || n != 1 {
			t.Errorf("holder %q with %d transitions, want %q with 1", h, n, rs[1-i].e.Identity())
		}
		stop()
	})
}

func TestElectionConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*ElectionConfig)
		want string
	}{
		{"ok", func(*ElectionConfig) {}, ""},
		{"no identity", func(c *ElectionConfig) { c.Identity = "" }, "all three are required"},
		{"renew deadline not shorter", func(c *ElectionConfig) { c.RenewDeadline = c.LeaseDuration }, "shorter than the lease duration"},
		{"retry not shorter", func(c *ElectionConfig) { c.RetryPeriod = c.RenewDeadline }, "shorter than the renew deadline"},
		{"sub-second lease", func(c *ElectionConfig) { c.LeaseDuration = 500 * time.Millisecond }, "at least 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testElection
			c.Identity = "a"
			tc.mod(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}
