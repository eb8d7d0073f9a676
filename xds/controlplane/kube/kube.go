package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skeinmesh/skein/xds/controlplane"
)

// The resources watched.
var (
	podsGVR           = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	slicesGVR         = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}
	configurationsGVR = schema.GroupVersionResource{Group: "dapr.io", Version: "v1alpha1", Resource: "configurations"}
	resilienciesGVR   = schema.GroupVersionResource{Group: "dapr.io", Version: "v1alpha1", Resource: "resiliencies"}
	httpEndpointsGVR  = schema.GroupVersionResource{Group: "dapr.io", Version: "v1alpha1", Resource: "httpendpoints"}
)

// RESTConfig is the API server connection: the kubeconfig file when one is
// given, else the pod's in-cluster config (its service account).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfig != "" {
		if _, err := os.Stat(kubeconfig); err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		return nil, fmt.Errorf("in-cluster config (give --kubeconfig outside a cluster): %w", err)
	}
	cfg.UserAgent = "skein-control-plane"
	return cfg, nil
}

// Watcher keeps informers on the cluster and hands its state to a sink.
// Create it with New, then Run.
type Watcher struct {
	client dynamic.Interface
	sink   func(controlplane.Cluster)
	log    *slog.Logger

	pods, slices, configs, resils, endpoints cache.SharedIndexInformer
	kick                                     chan struct{}
}

// New makes a Watcher of the API server cfg reaches; sink gets the
// cluster's state (from Run's goroutine, one call at a time).
func New(cfg *rest.Config, sink func(controlplane.Cluster), log *slog.Logger) (*Watcher, error) {
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	w := &Watcher{client: client, sink: sink, log: log.With("component", "kubernetes"), kick: make(chan struct{}, 1)}
	w.pods = w.informer(podsGVR, transformPod)
	w.slices = w.informer(slicesGVR, transformSlice)
	w.configs = w.informer(configurationsGVR, transformDapr)
	w.resils = w.informer(resilienciesGVR, transformDapr)
	w.endpoints = w.informer(httpEndpointsGVR, transformDapr)
	return w, nil
}

// informer lists and watches gvr in every namespace; transform converts
// each object as it enters the cache.
func (w *Watcher) informer(gvr schema.GroupVersionResource, transform cache.TransformFunc) cache.SharedIndexInformer {
	res := w.client.Resource(gvr)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return res.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformerWithOptions(lw, &unstructured.Unstructured{}, cache.SharedIndexInformerOptions{
		ObjectDescription: gvr.String(),
	})
	// Cannot fail: the informer has not started.
	_ = inf.SetTransform(transform)
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.changed() },
		UpdateFunc: func(any, any) { w.changed() },
		DeleteFunc: func(any) { w.changed() },
	})
	return inf
}

// changed asks Run for a new state; bursts coalesce into one.
func (w *Watcher) changed() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Check lists each watched resource once, so that a missing CRD or a
// missing permission is a clear error at start rather than an informer
// retrying in the background.
func (w *Watcher) Check(ctx context.Context) error {
	var errs []error
	for _, gvr := range []schema.GroupVersionResource{podsGVR, slicesGVR, configurationsGVR, resilienciesGVR, httpEndpointsGVR} {
		_, err := w.client.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
		switch {
		case err == nil:
		case apierrors.IsNotFound(err) && gvr.Group == "dapr.io":
			errs = append(errs, fmt.Errorf("list %s: the resource does not exist: install Dapr's CRDs (kubectl apply -f deploy/crds/)", gvr))
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			errs = append(errs, fmt.Errorf("list %s: the control plane may not (it needs get, list and watch; see deploy/helm/skein): %w", gvr, err))
		default:
			errs = append(errs, fmt.Errorf("list %s: %w", gvr, err))
		}
	}
	return errors.Join(errs...)
}

// Run runs the informers until ctx ends: once every cache holds its first
// list, sink gets the cluster's state, and again after every change.
func (w *Watcher) Run(ctx context.Context) error {
	infs := []cache.SharedIndexInformer{w.pods, w.slices, w.configs, w.resils, w.endpoints}
	var wg sync.WaitGroup
	defer wg.Wait() // the informers end with ctx
	for _, inf := range infs {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	start := time.Now()
	synced := make([]cache.InformerSynced, len(infs))
	for i, inf := range infs {
		synced[i] = inf.HasSynced
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ctx.Err()
	}
	w.log.Info("kubernetes caches synced", "took", time.Since(start).Round(time.Millisecond))
	for {
		// A change signalled before this read is in it: drop its kick.
		select {
		case <-w.kick:
		default:
		}
		w.sink(w.state())
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		}
	}
}
