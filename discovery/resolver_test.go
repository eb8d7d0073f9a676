package discovery

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// pushSource is a Source and Notifier whose instances the test changes,
// with (push) or without (set) telling its subscribers.
type pushSource struct {
	mu   sync.Mutex
	ins  map[string][]Instance // "<app-id>.<namespace>" → instances
	subs map[int]func(appID, namespace string)
	next int
}

func newPushSource() *pushSource {
	return &pushSource{ins: map[string][]Instance{}, subs: map[int]func(appID, namespace string){}}
}

func (s *pushSource) Lookup(appID, namespace string) ([]Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ins[appID+"."+namespace], nil
}

func (s *pushSource) Subscribe(changed func(appID, namespace string)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	s.next++
	s.subs[id] = changed
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// set changes appID's instances silently: only polling can see it.
func (s *pushSource) set(appID string, addrs ...string) {
	ins := make([]Instance, 0, len(addrs))
	for _, a := range addrs {
		ins = append(ins, Instance{AppID: appID, Namespace: "default", Address: a, Hostname: "h"})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ins[appID+".default"] = ins
}

// push changes appID's instances and tells the subscribers, as xDS EDS
// does: after Lookup returns the new ones, from the pusher's goroutine,
// holding no lock of the source.
func (s *pushSource) push(appID string, addrs ...string) {
	s.set(appID, addrs...)
	s.mu.Lock()
	subs := make([]func(appID, namespace string), 0, len(s.subs))
	for _, f := range s.subs {
		subs = append(subs, f)
	}
	s.mu.Unlock()
	for _, f := range subs {
		f(appID, "default")
	}
}

func (s *pushSource) subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// addrsOf returns the addresses of appID's endpoints as the resolver has
// them cached now (nil when none), without reading the source.
func addrsOf(r *Resolver, appID string) []string {
	return r.Known()[appID+".default"]
}

// runResolver runs r.Run in the bubble until the returned stop is called;
// it returns once Run waits for work, stop once Run returned.
func runResolver(r *Resolver) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	synctest.Wait() // Run has subscribed and is waiting
	return func() {
		cancel()
		<-done
	}
}

// TestResolverPushWithoutPolling pins that with polling off a Notifier's
// push reaches the resolver at once, keeps the endpoint values of the
// instances that stay (their load statistics and outlier state), and is
// the only way a change gets in.
func TestResolverPushWithoutPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newPushSource()
		src.set("orders", "10.0.0.1:1")
		r := NewResolver(src, slog.New(slog.DiscardHandler), WithRefreshInterval(0))
		stop := runResolver(r)

		eps, err := r.Endpoints(t.Context(), Target{AppID: "orders", Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		first := eps[0]

		src.push("orders", "10.0.0.1:1", "10.0.0.2:1")
		synctest.Wait() // Run has handled the push and is idle again
		if diff := cmp.Diff([]string{"10.0.0.1:1", "10.0.0.2:1"}, addrsOf(r, "orders")); diff != "" {
			t.Errorf("endpoints after the push (-want +got):\n%s", diff)
		}
		eps, _ = r.Endpoints(t.Context(), Target{AppID: "orders", Namespace: "default"})
		if eps[0] != first {
			t.Error("the push replaced the endpoint of an instance that stayed: its statistics are lost")
		}

		src.set("orders", "10.0.0.3:1") // not pushed
		time.Sleep(time.Hour)
		synctest.Wait()
		if diff := cmp.Diff([]string{"10.0.0.1:1", "10.0.0.2:1"}, addrsOf(r, "orders")); diff != "" {
			t.Errorf("with polling off, an unpushed change was read (-want +got):\n%s", diff)
		}

		src.push("orders", "10.0.0.3:1")
		synctest.Wait()
		if diff := cmp.Diff([]string{"10.0.0.3:1"}, addrsOf(r, "orders")); diff != "" {
			t.Errorf("endpoints after the second push (-want +got):\n%s", diff)
		}

		src.push("payments", "10.0.0.9:1") // never asked about: not cached
		synctest.Wait()
		if got := r.Known(); len(got) != 1 {
			t.Errorf("Known() = %v, want orders only", got)
		}

		stop()
		if n := src.subscribers(); n != 0 {
			t.Errorf("%d subscriptions left after Run returned, want 0", n)
		}
	})
}

// TestResolverReadsCachedNamesOnSubscribe pins that a change pushed before
// Run subscribed is not lost when polling is off.
func TestResolverReadsCachedNamesOnSubscribe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newPushSource()
		src.set("orders", "10.0.0.1:1")
		r := NewResolver(src, slog.New(slog.DiscardHandler), WithRefreshInterval(-1))
		if _, err := r.Endpoints(t.Context(), Target{AppID: "orders", Namespace: "default"}); err != nil {
			t.Fatal(err)
		}
		src.push("orders", "10.0.0.2:1") // nobody subscribed yet
		defer runResolver(r)()
		synctest.Wait()
		if diff := cmp.Diff([]string{"10.0.0.2:1"}, addrsOf(r, "orders")); diff != "" {
			t.Errorf("endpoints once Run started (-want +got):\n%s", diff)
		}
	})
}

// TestResolverRefreshInterval pins when polling sees a change the source
// did not push.
func TestResolverRefreshInterval(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []ResolverOption
		after time.Duration
		want  []string
	}{
		{"default polls every 250ms", nil, DefaultRefreshInterval, []string{"10.0.0.2:1"}},
		{"default not yet", nil, DefaultRefreshInterval - time.Millisecond, []string{"10.0.0.1:1"}},
		{"custom", []ResolverOption{WithRefreshInterval(time.Minute)}, time.Minute, []string{"10.0.0.2:1"}},
		{"zero turns it off", []ResolverOption{WithRefreshInterval(0)}, time.Hour, []string{"10.0.0.1:1"}},
		{"negative turns it off", []ResolverOption{WithRefreshInterval(-time.Second)}, time.Hour, []string{"10.0.0.1:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := newPushSource()
				src.set("orders", "10.0.0.1:1")
				r := NewResolver(src, slog.New(slog.DiscardHandler), tc.opts...)
				defer runResolver(r)()
				if _, err := r.Endpoints(t.Context(), Target{AppID: "orders", Namespace: "default"}); err != nil {
					t.Fatal(err)
				}
				src.set("orders", "10.0.0.2:1")
				time.Sleep(tc.after)
				synctest.Wait()
				if diff := cmp.Diff(tc.want, addrsOf(r, "orders")); diff != "" {
					t.Errorf("endpoints after %v (-want +got):\n%s", tc.after, diff)
				}
			})
		})
	}
}

// TestResolverForgetsNamesWithoutInstances covers issue 14 point 3 here:
// calls naming app ids that have no instance leave nothing cached, so
// ever new names grow neither the cache nor each refresh; a name keeps its
// entry while it has instances and loses it when the last one goes.
func TestResolverForgetsNamesWithoutInstances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newPushSource()
		src.set("known", "127.0.0.1:1", "127.0.0.1:2")
		r := NewResolver(src, slog.New(slog.DiscardHandler))
		stop := runResolver(r)
		defer stop()
		for i := range 10_000 {
			if _, err := r.Endpoints(context.Background(), Target{AppID: "ghost-" + strconv.Itoa(i), Namespace: "default"}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("ghost-%d: err %v, want ErrNotFound", i, err)
			}
		}
		if _, err := r.Endpoints(context.Background(), Target{AppID: "known", Namespace: "default"}); err != nil {
			t.Fatal(err)
		}
		if got := r.Len(); got != 1 {
			t.Errorf("%d names cached after 10,000 unknown ones and one known, want 1", got)
		}
		src.set("known") // its instances go away; the next poll sees it
		time.Sleep(2 * DefaultRefreshInterval)
		synctest.Wait()
		if got := r.Len(); got != 0 {
			t.Errorf("%d names cached after the last instance went, want 0", got)
		}
	})
}
