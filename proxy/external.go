package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/skeinmesh/skein/httpendpoint"
	"github.com/skeinmesh/skein/proxy/h1"
)

// External invocation (contract §1.2): a target that is an http:// or
// https:// URL, or the name of an HTTPEndpoint resource, is a service
// without a sidecar. The call goes straight to its base URL, through the
// same resiliency, metrics and tracing layers as a call to another sidecar
// (its policy keyed by the target exactly as the app wrote it, as in
// Dapr), but no discovery and no mTLS identity: the endpoint's own TLS.

// externalEndpoint is one compiled external target. Immutable.
type externalEndpoint struct {
	name    string   // the resource's name, or the URL as written
	base    *url.URL // scheme, host and path prefix of every call
	headers []endpointHeader
	rt      *h1.Transport
}

type endpointHeader struct{ name, value string }

// isURLTarget reports whether an invocation target is a URL (external
// invocation) rather than an app id.
func isURLTarget(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// externalTransports are the connection pools of URL targets, shared by
// every URL (a pool per address inside): cleartext, and TLS verified
// against the system's roots.
type externalTransports struct{ plain, tls *h1.Transport }

func newExternalTransports() *externalTransports {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &externalTransports{
		plain: &h1.Transport{Dial: h1.DialTCP(d), IdleTimeout: externalIdleTimeout},
		tls:   &h1.Transport{Dial: h1.DialTLS(d, &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}), IdleTimeout: externalIdleTimeout},
	}
}

// externalIdleTimeout closes idle connections to external services.
const externalIdleTimeout = 30 * time.Second

// urlEndpoint is the endpoint of a URL target.
func (t *externalTransports) urlEndpoint(raw string) (*externalEndpoint, error) {
	u, err := httpendpoint.ParseBaseURL(raw)
	if err != nil {
		return nil, err
	}
	rt := t.plain
	if u.Scheme == "https" {
		rt = t.tls
	}
	return &externalEndpoint{name: raw, base: u, rt: rt}, nil
}

// endpointFor is the external endpoint an invocation names, nil when its
// target is an app. URL targets first, then HTTPEndpoint resources (the
// name as written, in the caller's namespace), as Dapr resolves them.
func (s *Sidecar) endpointFor(inv Invocation, snap *Snapshot) (*externalEndpoint, error) {
	if isURLTarget(inv.Name) {
		return s.externalRT.urlEndpoint(inv.Name)
	}
	if e := snap.Endpoints[inv.Name]; e != nil {
		return e, nil
	}
	return nil, nil
}

// rewriteExternal addresses a call to its external endpoint: base URL
// joined with the method, the query as sent, the endpoint's headers; no
// hop-by-hop headers, nor the invoke API's own (dapr-app-id, the API
// token), nor the caller identity headers of calls between sidecars.
func (s *Sidecar) rewriteExternal(in, out *http.Request) {
	c := callFrom(in.Context())
	e := c.external
	out.URL.Scheme, out.URL.Host = e.base.Scheme, e.base.Host
	out.Host = e.base.Host
	out.URL.Path = path.Join("/", e.base.Path, c.method)
	if strings.HasSuffix(c.method, "/") || (c.method == "" && strings.HasSuffix(e.base.Path, "/")) {
		out.URL.Path += "/"
	}
	out.URL.RawPath = ""
	out.URL.RawQuery = in.URL.RawQuery
	out.Method = invokeVerb(out.Method)
	h := out.Header
	delete(h, HeaderAppID)
	if s.opts.APIToken != "" {
		delete(h, HeaderAPIToken)
	}
	for _, hd := range e.headers {
		h.Set(hd.name, hd.value)
	}
	setTrace(h, in.Context())
}

// externalCalls sends a call on its endpoint's pool.
func externalCalls(r *http.Request) (*http.Response, error) {
	c := callFrom(r.Context())
	if c == nil || c.external == nil {
		return nil, errors.New("external call outside an invocation")
	}
	return c.external.rt.RoundTrip(r)
}

// compileEndpoint builds one HTTPEndpoint resource.
func compileEndpoint(r *Resource) (*externalEndpoint, error) {
	sp, err := httpendpoint.Decode(&r.Spec)
	if err != nil {
		return nil, err
	}
	return buildEndpoint(r.Metadata.Name, sp)
}

// buildEndpoint builds the endpoint name of spec sp, from a file or from
// the control plane, reading its environment references in the sidecar's
// own environment.
func buildEndpoint(name string, sp *httpendpoint.Spec) (*externalEndpoint, error) {
	if err := sp.Validate(); err != nil {
		return nil, err
	}
	base, err := httpendpoint.ParseBaseURL(sp.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("baseUrl: %w", err)
	}
	e := &externalEndpoint{name: name, base: base}
	for i, h := range sp.Headers {
		v, err := h.Resolve(os.LookupEnv)
		if err == nil {
			err = httpendpoint.CheckValue(v)
		}
		if err != nil {
			return nil, fmt.Errorf("headers[%d] (%s): %w", i, h.Name, err)
		}
		e.headers = append(e.headers, endpointHeader{http.CanonicalHeaderKey(h.Name), v})
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if t := sp.ClientTLS; t != nil {
		doc := func(s *httpendpoint.Source) ([]byte, error) {
			if s == nil {
				return nil, nil
			}
			v, err := s.Resolve(os.LookupEnv)
			return []byte(v), err
		}
		ca, err := doc(t.RootCA)
		if err != nil {
			return nil, fmt.Errorf("clientTLS.rootCA: %w", err)
		}
		if len(ca) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return nil, errors.New("clientTLS.rootCA: no PEM certificate")
			}
			cfg.RootCAs = pool
		}
		cert, err := doc(t.Certificate)
		if err != nil {
			return nil, fmt.Errorf("clientTLS.certificate: %w", err)
		}
		key, err := doc(t.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("clientTLS.privateKey: %w", err)
		}
		switch {
		case len(cert) > 0 && len(key) > 0:
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("clientTLS: certificate and key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		case len(cert) > 0 || len(key) > 0:
			return nil, errors.New("clientTLS: certificate and privateKey go together")
		}
	}
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if base.Scheme == "https" {
		e.rt = &h1.Transport{Dial: h1.DialTLS(d, cfg), IdleTimeout: externalIdleTimeout}
	} else {
		e.rt = &h1.Transport{Dial: h1.DialTCP(d), IdleTimeout: externalIdleTimeout}
	}
	return e, nil
}

// compileEndpoints builds the HTTPEndpoint resources that apply to appID
// (no scopes, or appID among them), then those the control plane pushed
// (already scoped to this sidecar's app and namespace), which replace a
// file's of the same name: per target, xDS wins (XDSConfig). Any error
// rejects the configuration (xDS: NACK).
func compileEndpoints(cfg Config, appID string) (map[string]*externalEndpoint, error) {
	var out map[string]*externalEndpoint
	add := func(e *externalEndpoint) {
		if out == nil {
			out = map[string]*externalEndpoint{}
		}
		out[e.name] = e // a later one of the same name replaces an earlier one
	}
	for i := range cfg.Resources {
		r := &cfg.Resources[i]
		if r.Kind != "HTTPEndpoint" {
			continue
		}
		if len(r.Scopes) > 0 && !slices.Contains(r.Scopes, appID) {
			continue
		}
		e, err := compileEndpoint(r)
		if err != nil {
			return nil, fmt.Errorf("%s: HTTPEndpoint %s: %w", r.File, r.Metadata.Name, err)
		}
		add(e)
	}
	if x := cfg.XDS; x != nil {
		for _, name := range slices.Sorted(maps.Keys(x.HTTPEndpoints)) {
			e, err := buildEndpoint(name, x.HTTPEndpoints[name])
			if err != nil {
				return nil, fmt.Errorf("xds %s: HTTPEndpoint %s: %w", x.Version, name, err)
			}
			add(e)
		}
	}
	return out, nil
}

// namedEndpoint is an HTTPEndpoint as /v1.0/metadata lists it.
type namedEndpoint struct {
	Name string `json:"name"`
}

// endpointNames lists snap's HTTPEndpoints by name, sorted.
func endpointNames(snap *Snapshot) []namedEndpoint {
	out := make([]namedEndpoint, 0, len(snap.Endpoints))
	for n := range snap.Endpoints {
		out = append(out, namedEndpoint{n})
	}
	slices.SortFunc(out, func(a, b namedEndpoint) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// closeEndpoints closes the idle connections of a replaced snapshot's
// endpoints.
func closeEndpoints(m map[string]*externalEndpoint) {
	for _, e := range m {
		e.rt.CloseIdleConnections()
	}
}
