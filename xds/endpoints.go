package xds

import (
	"sync/atomic"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/proxy"
)

// Endpoints is the discovery.Source of the instances xDS EDS lists. An app
// with a Cluster is looked up here only (no instances until its
// ClusterLoadAssignment arrives); any other app falls back to another
// source, normally the embedded registry, so apps on this machine that the
// control plane does not know stay reachable. Sidecars with separate
// $SKEIN_HOMEs thus find each other only through the control plane.
//
// Safe for concurrent use; the zero value has no fallback.
type Endpoints struct {
	fallback discovery.Source
	m        atomic.Pointer[map[proxy.Target][]discovery.Instance]
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
		if ins, ok := (*m)[proxy.Target{AppID: appID, Namespace: namespace}]; ok {
			return ins, nil
		}
	}
	if e.fallback == nil {
		return nil, nil
	}
	return e.fallback.Lookup(appID, namespace)
}

// set replaces the instances of every xDS app; m is not modified later.
func (e *Endpoints) set(m map[proxy.Target][]discovery.Instance) { e.m.Store(&m) }
