package proxy

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/internal/yamlfield"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
	"github.com/skeinmesh/skein/ratelimit"
)

// Rate limits: Dapr's middleware.http.ratelimit components, applied where a
// Configuration's spec.httpPipeline (app → this sidecar's HTTP API) or
// spec.appHttpPipeline (this sidecar → its app) names them, and Skein's
// per-caller limits (spec.callerRateLimits) on calls from other sidecars.
// Each refusal is a 429 with Retry-After and reason RATE_LIMITED, counted
// in skein_ratelimit_refused_total.

// codeTooManyRequests is the errorCode of a middleware refusal. Dapr's
// middleware answers 429 with a plain-text body and no code; this is the
// HTTP status's name in Dapr's style.
const codeTooManyRequests = "ERR_TOO_MANY_REQUESTS"

// msgRateLimited is the text Dapr's middleware (tollbooth) answers with.
const msgRateLimited = "You have reached maximum request limit."

// Where a refusal happened: the limiter label of skein_ratelimit_refused_total.
const (
	limiterHTTPPipeline    = "http_pipeline"
	limiterAppHTTPPipeline = "app_http_pipeline"
	limiterCaller          = "caller"
)

// middlewareLimit is a loaded middleware.http.ratelimit component: a bucket
// per client address. One is shared by both pipelines that name it, as
// Dapr builds a component's handler once.
type middlewareLimit struct {
	name    string
	clients *ratelimit.Clients
	// Headers of a refusal, formatted once: tollbooth's X-Rate-Limit-Limit
	// ("%.2f") and the draft RateLimit-Limit (rounded).
	xLimit, limit string
}

func newMiddlewareLimit(name string, l ratelimit.Limit) *middlewareLimit {
	return &middlewareLimit{
		name:    name,
		clients: ratelimit.NewClients(l, ratelimit.MaxClients),
		xLimit:  strconv.FormatFloat(l.RequestsPerSecond, 'f', 2, 64),
		limit:   strconv.Itoa(int(math.Round(l.RequestsPerSecond))),
	}
}

// metadataComponent is a component as /v1.0/metadata lists it (Dapr's
// components[]).
type metadataComponent struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Version      string   `json:"version"`
	Capabilities []string `json:"capabilities"`
}

// rateLimits is what a Snapshot limits by rate. The zero value limits
// nothing.
type rateLimits struct {
	// api and app are the components spec.httpPipeline and
	// spec.appHttpPipeline name, in order.
	api, app []*middlewareLimit
	// callers is spec.callerRateLimits; nil: none.
	callers *ratelimit.Callers
	// byName are the ratelimit components loaded for this app (inherit);
	// components lists them for /v1.0/metadata, sorted by name.
	byName     map[string]*middlewareLimit
	components []metadataComponent
}

// inherit carries the state of old's unchanged limits into l, which is not
// yet shared: a component of the same name and limit keeps its client
// buckets, a caller policy of the same caller and limit its bucket. A
// changed limit starts full.
func (l *rateLimits) inherit(old *rateLimits) {
	for name, m := range l.byName {
		if o, ok := old.byName[name]; ok && o.clients.Limit() == m.clients.Limit() {
			m.clients = o.clients
		}
	}
	l.callers.Inherit(old.callers)
}

// middlewareComponent is what a Component resource of a middleware type
// says (Dapr's components/v1alpha1 ComponentSpec).
type middlewareComponent struct {
	name, typ, version, file string
	metadata                 map[string]string
}

// compileRateLimits reads the middleware components under --resources-path
// that apply to appID, the Configuration's pipelines and its
// spec.callerRateLimits. Any error rejects the config: a pipeline naming a
// component that is not there, scoped to other apps, of another type or
// version, or of a middleware type Skein does not implement, is refused
// (Dapr's runtime skips such handlers silently, so a request limit or an
// auth check would be missing without a word).
func compileRateLimits(cfg Config, appID string) (rateLimits, error) {
	var l rateLimits
	var errs []error
	loaded := map[string]*middlewareComponent{}
	elsewhere := map[string]bool{} // names of middleware components scoped to other apps
	for i := range cfg.Resources {
		r := &cfg.Resources[i]
		if r.Kind != "Component" {
			continue
		}
		typ := ""
		if n := yamlfield.Resolve(yamlfield.Field(&r.Spec, "type")); n != nil && n.Kind == yaml.ScalarNode {
			typ = n.Value
		}
		if !strings.HasPrefix(typ, "middleware.") {
			continue // state stores, pub/sub...: not Skein's business
		}
		if len(r.Scopes) > 0 && !slices.Contains(r.Scopes, appID) {
			elsewhere[r.Metadata.Name] = true
			continue
		}
		c := &middlewareComponent{name: r.Metadata.Name, typ: typ, version: ratelimit.MiddlewareVersion, file: r.File}
		if typ == ratelimit.MiddlewareType {
			var err error
			if c, err = decodeMiddlewareComponent(r); err != nil {
				errs = append(errs, err)
				continue
			}
		} else if n := yamlfield.Resolve(yamlfield.Field(&r.Spec, "version")); n != nil && n.Kind == yaml.ScalarNode && n.Value != "" {
			// Another middleware: Skein cannot run it, and says so if a
			// pipeline names it; its spec is not Skein's to judge.
			c.version = n.Value
		}
		if prev, dup := loaded[c.name]; dup {
			errs = append(errs, fmt.Errorf("%s: component %s: defined twice (also in %s)", c.file, c.name, prev.file))
			continue
		}
		loaded[c.name] = c
	}
	if err := errors.Join(errs...); err != nil {
		return rateLimits{}, err
	}
	// Build every ratelimit component, whether a pipeline names it or
	// not, so a bad one is reported when written, as Dapr reports it when
	// it loads.
	l.byName = map[string]*middlewareLimit{}
	for _, c := range loaded {
		if c.typ != ratelimit.MiddlewareType {
			continue
		}
		lim, err := ratelimit.MiddlewareLimit(c.metadata)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: component %s: %w", c.file, c.name, err))
			continue
		}
		l.byName[c.name] = newMiddlewareLimit(c.name, lim)
		l.components = append(l.components, metadataComponent{Name: c.name, Type: c.typ, Version: c.version, Capabilities: []string{}})
	}
	slices.SortFunc(l.components, func(a, b metadataComponent) int { return strings.Compare(a.Name, b.Name) })
	if cf := cfg.Configuration; cf != nil {
		var err error
		if l.api, err = compilePipeline(cf, "httpPipeline", loaded, elsewhere, l.byName); err != nil {
			errs = append(errs, err)
		}
		if l.app, err = compilePipeline(cf, "appHttpPipeline", loaded, elsewhere, l.byName); err != nil {
			errs = append(errs, err)
		}
		if n := yamlfield.Field(&cf.Spec, "callerRateLimits"); n != nil {
			rc, err := ratelimit.Decode(n)
			if err == nil {
				l.callers, err = ratelimit.Compile(rc)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: spec.%w", cf.File, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return rateLimits{}, err
	}
	return l, nil
}

// decodeMiddlewareComponent strictly decodes the spec of a
// middleware.http.ratelimit Component: type, version, metadata (name and value; secret and
// environment references are not supported), and Dapr's ignoreErrors and
// initTimeout, accepted and of no use here.
func decodeMiddlewareComponent(r *Resource) (*middlewareComponent, error) {
	c := &middlewareComponent{name: r.Metadata.Name, file: r.File, metadata: map[string]string{}}
	var d yamlfield.Decoder
	d.Mapping(&r.Spec, "spec", func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "type":
			d.Str(v, path, &c.typ)
		case "version":
			d.Str(v, path, &c.version)
		case "ignoreErrors":
			var b bool
			d.Bool(v, path, &b)
		case "initTimeout":
			var s string
			d.Str(v, path, &s)
		case "metadata":
			d.List(v, path, func(i int, v *yaml.Node, path string) {
				var name, value string
				hasValue := false
				d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
					switch key {
					case "name":
						d.Str(v, path, &name)
					case "value":
						d.Str(v, path, &value) // a number is a scalar too: 10 reads as "10"
						hasValue = true
					case "secretKeyRef", "envRef":
						d.Errorf(v, path, "not supported by Skein: give the value")
					default:
						return false
					}
					return true
				})
				switch {
				case name == "":
					d.Errorf(v, path+".name", "required")
				case !hasValue:
					d.Errorf(v, path+".value", "required")
				default:
					if _, dup := c.metadata[name]; dup {
						d.Errorf(v, path+".name", "%q: given twice", name)
					}
					c.metadata[name] = value
				}
			})
		default:
			return false
		}
		return true
	})
	if c.version == "" {
		c.version = ratelimit.MiddlewareVersion // as Dapr reads an unversioned handler
	}
	if c.version != ratelimit.MiddlewareVersion {
		d.Errorf(&r.Spec, "spec.version", "%q: %s has only version %s", c.version, ratelimit.MiddlewareType, ratelimit.MiddlewareVersion)
	}
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("%s: component %s: %w", r.File, r.Metadata.Name, err)
	}
	return c, nil
}

// compilePipeline reads the Configuration's spec.<field>.handlers (Dapr's
// PipelineSpec: name, type, version, selector) and returns the rate limits
// they name, in order.
func compilePipeline(cf *Resource, field string, loaded map[string]*middlewareComponent, elsewhere map[string]bool, limits map[string]*middlewareLimit) ([]*middlewareLimit, error) {
	n := yamlfield.Field(&cf.Spec, field)
	if n == nil {
		return nil, nil
	}
	var d yamlfield.Decoder
	var out []*middlewareLimit
	seen := map[string]bool{}
	d.Mapping(n, "spec."+field, func(key string, v *yaml.Node, path string) bool {
		if key != "handlers" {
			return false
		}
		d.List(v, path, func(i int, v *yaml.Node, path string) {
			var name, typ, version string
			d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
				switch key {
				case "name":
					d.Str(v, path, &name)
				case "type":
					d.Str(v, path, &typ)
				case "version":
					d.Str(v, path, &version)
				case "selector":
					// Dapr does not apply selectors to HTTP pipelines.
					if f := yamlfield.Field(v, "fields"); f != nil && len(yamlfield.Resolve(f).Content) > 0 {
						d.Errorf(v, path, "not supported in an HTTP pipeline (Dapr ignores it)")
					}
				default:
					return false
				}
				return true
			})
			if version == "" {
				version = ratelimit.MiddlewareVersion // Dapr's middleware store: "" is v1
			}
			c, ok := loaded[name]
			switch {
			case name == "":
				d.Errorf(v, path+".name", "required")
			case elsewhere[name] && !ok:
				d.Errorf(v, path, "component %q is scoped to other apps", name)
			case !ok:
				d.Errorf(v, path, "component %q not found (no Component of that name under --resources-path)", name)
			case typ != c.typ:
				d.Errorf(v, path, "type %q: component %q is of type %q", typ, name, c.typ)
			case version != c.version:
				d.Errorf(v, path, "version %q: component %q is version %q", version, name, c.version)
			case c.typ != ratelimit.MiddlewareType:
				d.Errorf(v, path, "type %q: not supported by Skein, which implements only %s", c.typ, ratelimit.MiddlewareType)
			case seen[name]:
				d.Errorf(v, path, "component %q listed twice", name)
			default:
				seen[name] = true
				if m := limits[name]; m != nil { // nil: the component's own error is reported
					out = append(out, m)
				}
			}
		})
		return true
	})
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", cf.File, err)
	}
	return out, nil
}

// rateMetrics counts refusals by where they happened and by the limit's
// name (a component's name, a caller policy's appId, or "default"): both
// come from the config, so the series are bounded by its size.
type rateMetrics struct {
	refused *prometheus.CounterVec
}

func newRateMetrics(reg prometheus.Registerer) *rateMetrics {
	m := &rateMetrics{refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_ratelimit_refused_total",
		Help: "Requests refused with 429 by a rate limit, by limiter (http_pipeline, app_http_pipeline, caller) and limit name (component, caller app, or default).",
	}, []string{"limiter", "name"})}
	reg.MustRegister(m.refused)
	return m
}

// httpPipeline applies the components spec.httpPipeline names to requests
// on the HTTP API, as daprd applies its HTTP pipeline to every route, with
// two exceptions: the health endpoints (a probe refused for the app's load
// would restart a healthy sidecar; Dapr limits them too) and Dapr's gRPC
// API, which has no HTTP pipeline in Dapr either.
func (s *Sidecar) httpPipeline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := s.snap.Load().limits.api; len(p) > 0 && !healthOrGRPC(r) {
			if !s.admitPipeline(w, r, p, limiterHTTPPipeline) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func healthOrGRPC(r *http.Request) bool {
	if daprgrpc.FromGRPC(r.Context()) {
		return true
	}
	return r.Method == http.MethodGet && (r.URL.Path == pathHealthz || r.URL.Path == pathHealthzOutbound)
}

// appPipeline applies the components spec.appHttpPipeline names to calls
// on their way to the app, from peers and from the app itself, as Dapr
// applies it on its HTTP app channel: not to a gRPC app, nor to a proxied
// gRPC call. Dapr's limiter keys these by the caller's host (the
// X-Forwarded-For its sidecar adds); here by the address the call came
// from, which is that host for a peer and loopback for self-invocation.
func (s *Sidecar) appPipeline(next http.Handler) http.Handler {
	if p := s.opts.AppProtocol; p == "grpc" || p == "grpcs" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := callFrom(r.Context()).snap.limits.app; len(p) > 0 && !daprgrpc.IsGRPC(r.Header) {
			if !s.admitPipeline(w, r, p, limiterAppHTTPPipeline) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// admitPipeline takes a token for r's client from every limit of p in
// order; at the first without one it answers 429 and returns false. Like
// Dapr's chain, the limits before the refusing one keep the token taken.
func (s *Sidecar) admitPipeline(w http.ResponseWriter, r *http.Request, p []*middlewareLimit, limiter string) bool {
	addr := clientAddr(r)
	now := time.Now()
	for _, m := range p {
		ok, wait := m.clients.Take(addr, now)
		if ok {
			continue
		}
		s.rateMetrics.refused.WithLabelValues(limiter, m.name).Inc()
		h := w.Header()
		h.Set("Retry-After", retryAfter(wait))
		// tollbooth's headers, on refusals only (it sets them on every
		// answer; nothing reads them on a success, and they would cost
		// every call).
		h.Set("X-Rate-Limit-Limit", m.xLimit)
		h.Set("X-Rate-Limit-Duration", "1")
		h.Set("RateLimit-Limit", m.limit)
		h.Set("RateLimit-Remaining", "0")
		h.Set("RateLimit-Reset", "1")
		writeError(w, http.StatusTooManyRequests, codeTooManyRequests, msgRateLimited, ReasonRateLimited, map[string]string{"component": m.name})
		return false
	}
	return true
}

// clientAddr is the address r's connection came from. Unlike Dapr's
// limiter it does not believe X-Forwarded-For or X-Real-IP, which any
// client can write: a client sending a new address with each request
// would otherwise get a fresh bucket each time. An unreadable address is
// the zero Addr, one client like any other.
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// retryAfter is RFC 9110 §10.2.3's delay-seconds for wait: whole seconds,
// rounded up, at least 1.
func retryAfter(wait time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(wait.Seconds()))), 10)
}

// rateLimitedError is a call refused by a per-caller limit.
type rateLimitedError struct {
	caller string // the verified SPIFFE ID, or "" for a call without one
	name   string // the limit: the caller policy's appId, or "default"
	limit  ratelimit.Limit
}

func (e *rateLimitedError) Error() string {
	who := "calls without a verified caller"
	if e.caller != "" {
		who = "calls from " + e.caller
	}
	return fmt.Sprintf("rate limited: %s exceed %s requests per second (burst %d) of limit %q",
		who, strconv.FormatFloat(e.limit.RequestsPerSecond, 'g', -1, 64), e.limit.Burst, e.name)
}

// limitedDetail returns the ErrorInfo metadata of a per-caller refusal.
func limitedDetail(err error) map[string]string {
	var limited *rateLimitedError
	if !errors.As(err, &limited) {
		return nil
	}
	return map[string]string{"limit": limited.name}
}

// limitCaller applies spec.callerRateLimits to a call from another
// sidecar, by its verified caller, after access control (a denied call
// takes no token, so a denied caller cannot drain the default bucket that
// other callers share). A refusal is a 429 with reason RATE_LIMITED; the
// caller's sidecar passes it to its app and does not hold it against this
// instance (breakers and outlier detection count only 5xx and gRPC server
// failures; a proxied gRPC call gets RESOURCE_EXHAUSTED).
func (s *Sidecar) limitCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cs := callFrom(r.Context()).snap.limits.callers; cs != nil {
			p, verified := identity.PeerFrom(r.Context())
			b, name := cs.For(ratelimit.Caller{TrustDomain: p.ID.TrustDomain().Name(), Namespace: p.Namespace, AppID: p.AppID}, verified)
			if b != nil {
				if ok, wait := b.Take(time.Now()); !ok {
					s.rateMetrics.refused.WithLabelValues(limiterCaller, name).Inc()
					w.Header().Set("Retry-After", retryAfter(wait))
					e := &rateLimitedError{name: name, limit: b.Limit()}
					if verified {
						e.caller = p.ID.String()
					}
					writeInvokeError(w, s.self.AppID, e)
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
