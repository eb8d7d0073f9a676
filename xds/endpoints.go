package xds

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/skeinmesh/skein/discovery"
)

// Endpoints is the discovery.Source of the instances xDS EDS lists. An app
// with a Cluster is looked up here only (no instances until its
// ClusterLoadAssignment arrives); any other app falls back to another
// source, normally the embedded registry, so apps on this machine that the
// control plane does not know stay reachable. Sidecars with separate
// $SKEIN_HOMEs thus find each other only through the control plane.
//
// It is a discovery.Notifier: every applied EDS update tells subscribers
// (the sidecar's Resolver) which apps' instances changed, so calls move to
// new instances without waiting for a poll. Changes of the fallback are not
// pushed; the Resolver's polling finds them.
//
// Safe for concurrent use; the zero value has no fallback.
type Endpoints struct {
	fallback discovery.Source
	m        atomic.Pointer[map[discovery.Target][]discovery.Instance]

	mu   sync.Mutex // guards subs and next
	subs map[int]func(appID, namespace string)
	next int
}

// NewEndpoints returns an empty Endpoints falling back to fallback (nil:
// none).
func NewEndpoints(fallback discovery.Source) *Endpoints {
	return &Endpoints{fallback: fallback}
}

// Lookup implements discovery.Source. The slice is shared: callers must
// not modify it.
func (e *Endpoints) Lookup(appID, namespace string) ([]discovery.Instance, error) {
	if m := e.m.Load(); m != nil {
		if ins, ok := (*m)[discovery.Target{AppID: appID, Namespace: namespace}]; ok {
			return ins, nil
		}
	}
	if e.fallback == nil {
		return nil, nil
	}
	return e.fallback.Lookup(appID, namespace)
}

// Subscribe implements discovery.Notifier: changed is called, from the xDS
// client's goroutine, with each app whose EDS instances an update added,
// changed or removed (a removed app falls back), after Lookup returns the
// new ones. changed must not block.
func (e *Endpoints) Subscribe(changed func(appID, namespace string)) (cancel func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.subs == nil {
		e.subs = map[int]func(appID, namespace string){}
	}
	id := e.next
	e.next++
	e.subs[id] = changed
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.subs, id)
	}
}

// set replaces the instances of every xDS app and tells subscribers which
// apps changed; m is not modified later. Calls are serialised (the
// client's Run).
func (e *Endpoints) set(m map[discovery.Target][]discovery.Instance) {
	var old map[discovery.Target][]discovery.Instance
	if p := e.m.Swap(&m); p != nil {
		old = *p
	}
	var changed []discovery.Target
	for t, ins := range m {
		if prev, ok := old[t]; !ok || !slices.Equal(prev, ins) {
			changed = append(changed, t)
		}
	}
	for t := range old {
		if _, ok := m[t]; !ok {
			changed = append(changed, t)
		}
	}
	if len(changed) == 0 {
		return
	}
	e.mu.Lock()
	subs := make([]func(appID, namespace string), 0, len(e.subs))
	for _, f := range e.subs {
		subs = append(subs, f)
	}
	e.mu.Unlock()
	for _, t := range changed {
		for _, f := range subs {
			f(t.AppID, t.Namespace)
		}
	}
}
