package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/skeinmesh/skein/accesslog"
	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
	"github.com/skeinmesh/skein/telemetry"
)

// Dapr's control endpoints on the API port.
const (
	pathHealthz         = "/v1.0/healthz"
	pathHealthzOutbound = "/v1.0/healthz/outbound"
	pathMetadata        = "/v1.0/metadata"
)

// call is the request-scoped fact the forwarders need: where the call goes.
type call struct {
	target Target
	method string
	// name is the target as the app named it, which Dapr's error messages
	// quote (e.g. "app-b.other"); empty on the callee side.
	name string
	// fromPeer is set on the callee side, where the identity headers come
	// from the caller's sidecar.
	fromPeer bool
	// snap is the configuration the call was started under: every layer
	// and every try of one call use the same view, even across a reload.
	snap *Snapshot
	// route is the outbound call's route, resolved once from snap by the
	// outermost outbound layer (resolveRoute); nil before it and inbound.
	route *Route
	// external is the endpoint of an external invocation (a URL or an
	// HTTPEndpoint); nil for a call to an app.
	external *externalEndpoint
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// serveAPI is the app-facing handler: control endpoints, else invocation.
// Like daprd, anything that is not a control endpoint is an invocation
// attempt, so unknown paths get the invoke API's 404.
func (s *Sidecar) serveAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		switch r.URL.Path {
		case pathHealthz:
			s.serveHealthz(w, r)
			return
		case pathHealthzOutbound:
			s.serveOutbound(w)
			return
		}
	}
	if s.opts.APIToken != "" {
		// DAPR_API_TOKEN: constant-time compare; the header goes no further.
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(HeaderAPIToken)), []byte(s.opts.APIToken)) != 1 {
			http.Error(w, "invalid api token", http.StatusUnauthorized)
			return
		}
	}
	if r.Method == http.MethodGet && r.URL.Path == pathMetadata && r.Header.Get(HeaderAppID) == "" {
		s.serveMetadata(w)
		return
	}
	inv, err := ParseInvocation(r, s.opts.Namespace)
	if err != nil {
		writeInvokeError(w, rawTarget(r), err)
		return
	}
	if !s.checkBody(w, r, inv.Target.AppID) {
		return
	}
	// A body the app fails to send ends the call as its own fault, not the callee's.
	ctx, abort := withClientBody(r)
	defer abort(nil)
	c := &call{target: inv.Target, method: inv.Method, name: inv.Name, snap: s.snap.Load()}
	ext, err := s.endpointFor(inv, c.snap)
	if err != nil {
		writeInvokeError(w, inv.Name, &InvalidAppIDError{ID: inv.Name, Reason: err.Error()})
		return
	}
	switch {
	case daprgrpc.IsGRPC(r.Header):
		telemetry.NameGRPC(r.Context(), r.URL.Path) // proxy mode: the user's method, as Dapr names it
	case daprgrpc.FromGRPC(r.Context()):
		telemetry.NameCall(r.Context(), inv.Name, inv.Method)
		telemetry.SetAPI(r.Context(), "grpc", "/dapr.proto.runtime.v1.Dapr/InvokeService")
	default:
		telemetry.NameCall(r.Context(), inv.Name, inv.Method)
	}
	if s.access != nil { // --access-log: nothing to note without it
		accesslog.Note(r.Context(), accesslog.Call{
			CallerApp: s.self.AppID, CallerNamespace: s.self.Namespace,
			CalleeApp: inv.Target.AppID, CalleeNamespace: inv.Target.Namespace,
			Method: inv.Method,
		})
	}
	r = r.WithContext(context.WithValue(ctx, callKey{}, c))
	if ext != nil {
		// A service without a sidecar (contract §1.2): straight to its URL.
		c.external, c.target = ext, Target{AppID: inv.Name}
		s.external.ServeHTTP(w, r)
		return
	}
	if inv.Target == s.self {
		// Self-invocation goes straight to the local app (contract §1.9).
		if s.opts.AppPort == 0 {
			writeInvokeError(w, inv.Target.AppID, errors.New("cannot invoke local endpoint: "+errNoAppChannel.Error()))
			return
		}
		s.toApp.ServeHTTP(w, r)
		return
	}
	s.remote.ServeHTTP(w, r)
}

// rawTarget names the target of a request for error messages, as given.
func rawTarget(r *http.Request) string {
	if v := r.Header.Get(HeaderAppID); v != "" {
		return v
	}
	if user, pass, ok := r.BasicAuth(); ok && strings.EqualFold(user, HeaderAppID) && pass != "" {
		return pass
	}
	if t, _, ok := parseInvokePath(r.URL.Path); ok {
		if u, err := url.QueryUnescape(t); err == nil {
			return u
		}
		return t
	}
	return ""
}

// checkBody enforces --max-body-size: a declared length over the limit is
// refused before anything is sent; a chunked body is cut off at the limit.
func (s *Sidecar) checkBody(w http.ResponseWriter, r *http.Request, target string) bool {
	max := s.opts.MaxBodySize
	if max <= 0 || r.Body == nil || r.Body == http.NoBody {
		return true
	}
	if r.ContentLength > max {
		writeInvokeError(w, target, errBodyTooLarge)
		return false
	}
	if r.ContentLength < 0 {
		r.Body = &limitedBody{rc: r.Body, left: max}
	}
	return true
}

// limitedBody fails reads past its limit with errBodyTooLarge.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return b.rc.Read(p)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// refusePeer answers a TLS call whose certificate names no app.
func refusePeer(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusUnauthorized, codeDirectInvoke, "caller presented no usable SPIFFE ID", ReasonUnauthenticated, nil)
}

// The inbound path, remote sidecar → this sidecar → app, is a chain of the
// layers below (order in chain.go) ending in s.local, the forwarder to the
// app. Each decides one thing once and records it in the call.

// inboundCall decides an inbound call's facts, once: the :authority must
// name this sidecar's app (a call meant for another app is refused rather
// than delivered to the wrong one) and an app channel must exist; the
// method is normalised again, as defence in depth (contract §1.3), and the
// verb made the one the app receives, so access control decides on exactly
// what the app gets. Later layers read the call from the context.
func (s *Sidecar) inboundCall(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != s.self.String() {
			writeError(w, http.StatusMisdirectedRequest, codeDirectInvoke,
				"failed to invoke, id: "+r.Host+", err: this sidecar serves "+s.self.String(), ReasonMisdirected, nil)
			return
		}
		if s.opts.AppPort == 0 {
			writeInvokeError(w, s.self.AppID, errNoAppChannel)
			return
		}
		m, err := NormalizeMethod(r.URL.Path)
		if err != nil {
			writeInvokeError(w, s.self.AppID, err)
			return
		}
		ctx := context.WithValue(r.Context(), callKey{}, &call{target: s.self, method: m, fromPeer: true, snap: s.snap.Load()})
		r = r.WithContext(ctx) // a copy: the inbound request stays as it came
		r.Method = invokeVerb(r.Method)
		next.ServeHTTP(w, r)
	})
}

// authorizeCall is access control, decided per request on the call's
// normalised method and verb, so a reloaded policy reaches open
// connections; a denied call never reaches the app.
func (s *Sidecar) authorizeCall(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callFrom(r.Context())
		if err := s.authorize(r, c.method, c.snap); err != nil {
			writeInvokeError(w, s.self.AppID, err)
			return
		}
		if daprgrpc.IsGRPC(r.Header) {
			telemetry.NameGRPC(r.Context(), r.URL.Path)
		} else {
			telemetry.NameServed(r.Context(), s.self.AppID, c.method)
		}
		if s.access != nil { // --access-log: nothing to note without it
			peer, _ := identity.PeerFrom(r.Context()) // none: logged as "unknown"
			accesslog.Note(r.Context(), accesslog.Call{
				CallerApp: peer.AppID, CallerNamespace: peer.Namespace,
				CalleeApp: s.self.AppID, CalleeNamespace: s.self.Namespace,
				Method: c.method,
			})
		}
		next.ServeHTTP(w, r)
	})
}

// callerBody makes a body the caller's sidecar fails to send end the call
// as the caller's fault, not the app's (clientbody.go).
func callerBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, abort := withClientBody(r)
		defer abort(nil)
		if ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// callerDeadline applies the caller's remaining time (grpc-timeout): the
// app call stops when it passes.
func callerDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, ok := parseTimeout(r.Header.Get(headerGRPCTimeout)); ok {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// rewriteRemote addresses a call to the target's logical name; the picker
// replaces the host with an instance's address.
func (s *Sidecar) rewriteRemote(in, out *http.Request) {
	c := callFrom(in.Context())
	name := c.target.String()
	out.URL.Scheme = s.peers.scheme()
	out.URL.Host = name
	out.Host = name
	out.Method = invokeVerb(out.Method)
	setPath(out.URL, c.method, in.URL.RawQuery)
	h := out.Header
	delete(h, HeaderAppID)
	if s.opts.APIToken != "" {
		delete(h, HeaderAPIToken)
	}
	stampIdentity(h, s.caller, c.target)
	s.fwd.stamp(h)
	s.access.AskTiming(h) // the ask when logging; the app's own Skein-Timing never passes
	setTrace(h, in.Context())
}

// rewriteLocal addresses a call to the local app.
func (s *Sidecar) rewriteLocal(in, out *http.Request) {
	c := callFrom(in.Context())
	addr := s.appAddr
	out.URL.Scheme = "http"
	if s.opts.AppProtocol == "https" || s.opts.AppProtocol == "grpcs" {
		out.URL.Scheme = "https"
	}
	out.URL.Host = addr
	out.Host = addr
	out.Method = invokeVerb(out.Method)
	setPath(out.URL, c.method, in.URL.RawQuery)
	h := out.Header
	delete(h, accesslog.HeaderTiming) // between sidecars only
	switch peer, ok := identity.PeerFrom(in.Context()); {
	case ok:
		// The caller is who its certificate says, whatever its headers say.
		stampIdentity(h, Caller{AppID: peer.AppID, Namespace: peer.Namespace}, c.target)
	case !c.fromPeer:
		delete(h, HeaderAppID)
		if s.opts.APIToken != "" {
			delete(h, HeaderAPIToken)
		}
		stampIdentity(h, s.caller, c.target)
	}
	if s.opts.AppAPIToken != "" {
		h[HeaderAPIToken] = []string{s.opts.AppAPIToken}
	}
	setTrace(h, in.Context())
}

func setPath(u *url.URL, method, rawQuery string) {
	u.Path = "/" + method
	u.RawPath = ""
	u.RawQuery = rawQuery
}

// setTrace makes the next hop a child of this hop's span: traceparent and
// tracestate are replaced; baggage passes through unchanged (contract §6.5).
func setTrace(h http.Header, ctx context.Context) {
	telemetry.Inject(ctx, h)
}

// codeMalformedRequest is Dapr's code for a request it cannot parse.
const codeMalformedRequest = "ERR_MALFORMED_REQUEST"

// badBaggage answers a request whose baggage header is not W3C baggage.
func badBaggage(w http.ResponseWriter, _ *http.Request, err error) {
	writeError(w, http.StatusBadRequest, codeMalformedRequest, err.Error(), ReasonInvalidBaggage, nil)
}

// proxyError answers a failed forward. A call its client's body ended is
// answered with that fault, whatever the transport made of the end; a
// client that went away gets nothing.
func (s *Sidecar) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if fault := clientFaultOf(r); fault != nil {
		err = fault
	} else if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return
	}
	c := callFrom(r.Context())
	id := ""
	if c != nil {
		id = c.target.AppID
		if c.name != "" {
			id = c.name
		}
	}
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.Debug("invoke failed", "target", id, "err", err)
	}
	writeInvokeError(w, id, err)
}

// servePublic serves the public port (--dapr-public-port): the health
// endpoints and nothing else, whoever asks.
func (s *Sidecar) servePublic(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case pathHealthz:
		s.serveHealthz(w, r)
	case pathHealthzOutbound:
		s.serveOutbound(w)
	default:
		http.NotFound(w, r)
	}
}

func (s *Sidecar) serveHealthz(w http.ResponseWriter, r *http.Request) {
	if id := r.URL.Query().Get("appid"); id != "" && id != s.opts.AppID {
		writeError(w, http.StatusInternalServerError, codeAppIDMismatch, "dapr app-id does not match", ReasonNotReady, nil)
		return
	}
	if !s.ready.Load() {
		writeError(w, http.StatusInternalServerError, codeNotReady, "dapr is not ready: [sidecar]", ReasonNotReady, nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sidecar) serveOutbound(w http.ResponseWriter) {
	if !s.ready.Load() {
		writeError(w, http.StatusInternalServerError, codeOutboundReady, "dapr outbound is not ready", ReasonNotReady, nil)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// metadata is the /v1.0/metadata document: Dapr's fields (contract §3.5)
// plus Skein's ports, known instances and config version.
type metadata struct {
	ID              string              `json:"id"`
	Namespace       string              `json:"namespace"`
	RuntimeVersion  string              `json:"runtimeVersion"`
	EnabledFeatures []string            `json:"enabledFeatures"`
	Actors          []any               `json:"actors"`
	Components      []metadataComponent `json:"components"`
	HTTPEndpoints   []namedEndpoint     `json:"httpEndpoints"`
	Subscriptions   []any               `json:"subscriptions"`
	Extended        map[string]string   `json:"extended"`
	AppConnection   appConnection       `json:"appConnectionProperties"`
	Ports           Ports               `json:"ports"`
	Instances       map[string][]string `json:"instances"`
	Config          configStatus        `json:"config"`
	XDS             *XDSStatus          `json:"xds,omitempty"`
}

type appConnection struct {
	Port           int    `json:"port,omitempty"`
	Protocol       string `json:"protocol"`
	ChannelAddress string `json:"channelAddress"`
	MaxConcurrency int    `json:"maxConcurrency,omitempty"`
	// Health is there with app health checks, as in Dapr (apphealth.go).
	Health *appHealthStatus `json:"health,omitempty"`
}

type configStatus struct {
	Version       string         `json:"version"`
	Configuration string         `json:"configuration,omitempty"`
	Resources     map[string]int `json:"resources"`
}

// grpcMetadata is what the gRPC API's GetMetadata reports: the fields of
// /v1.0/metadata that Dapr's GetMetadataResponse has.
func (s *Sidecar) grpcMetadata() daprgrpc.Metadata {
	var names []string
	for _, e := range endpointNames(s.snap.Load()) {
		names = append(names, e.Name)
	}
	return daprgrpc.Metadata{
		HTTPEndpoints:  names,
		ID:             s.opts.AppID,
		RuntimeVersion: Version,
		Extended:       map[string]string{"daprRuntimeVersion": "skein-" + Version},
		AppPort:        s.opts.AppPort,
		AppProtocol:    s.opts.AppProtocol,
		ChannelAddress: s.opts.AppChannelAddress,
		MaxConcurrency: max(s.opts.AppMaxConcurrency, 0),
		AppHealth:      s.grpcAppHealth(),
	}
}

func (s *Sidecar) serveMetadata(w http.ResponseWriter) {
	snap := s.snap.Load()
	components := snap.limits.components
	if components == nil {
		components = []metadataComponent{} // [], as daprd answers
	}
	md := metadata{
		ID:              s.opts.AppID,
		Namespace:       s.opts.Namespace,
		RuntimeVersion:  Version,
		EnabledFeatures: []string{},
		Actors:          []any{},
		Components:      components,
		HTTPEndpoints:   endpointNames(snap),
		Subscriptions:   []any{},
		Extended:        map[string]string{"daprRuntimeVersion": "skein-" + Version},
		AppConnection: appConnection{
			Port:           s.opts.AppPort,
			Protocol:       s.opts.AppProtocol,
			ChannelAddress: s.opts.AppChannelAddress,
			MaxConcurrency: max(s.opts.AppMaxConcurrency, 0),
			Health:         s.appHealthMetadata(),
		},
		Ports:     s.Ports(),
		Instances: s.resolver.Known(),
		Config:    configStatus{Version: snap.Version, Configuration: snap.ConfigName, Resources: snap.Kinds},
		XDS:       s.xds.status.Load(),
	}
	b, err := json.Marshal(md)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
