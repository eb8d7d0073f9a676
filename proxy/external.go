package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

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

// parseBaseURL checks a base URL: http or https, a host, no user
// information, query or fragment.
func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, err
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q: scheme must be http or https", s)
	case u.Host == "":
		return nil, fmt.Errorf("%q: no host", s)
	case u.User != nil, u.RawQuery != "", u.Fragment != "":
		return nil, fmt.Errorf("%q: a base URL has no user information, query or fragment", s)
	}
	return u, nil
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
	u, err := parseBaseURL(raw)
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
	removeHopHeaders(h)
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

// httpEndpointSpec is the spec of Dapr's HTTPEndpoint resource
// (dapr.io/v1alpha1).
type httpEndpointSpec struct {
	BaseURL string `yaml:"baseUrl"`
	Headers []struct {
		Name         string     `yaml:"name"`
		Value        string     `yaml:"value"`
		SecretKeyRef *secretRef `yaml:"secretKeyRef"`
		EnvRef       string     `yaml:"envRef"`
	} `yaml:"headers"`
	ClientTLS *struct {
		RootCA        *tlsDocument `yaml:"rootCA"`
		Certificate   *tlsDocument `yaml:"certificate"`
		PrivateKey    *tlsDocument `yaml:"privateKey"`
		Renegotiation string       `yaml:"renegotiation"`
	} `yaml:"clientTLS"`
}

// secretRef names a secret. Skein's secret store is the environment (as
// Dapr's secretstores.local.env): the secret is the environment variable
// Name, and Key, when set, must be Name too.
type secretRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

type tlsDocument struct {
	Value        string     `yaml:"value"`
	SecretKeyRef *secretRef `yaml:"secretKeyRef"`
	EnvRef       string     `yaml:"envRef"`
}

// resolve returns a value given inline, by environment variable, or by
// secret reference.
func resolve(value string, ref *secretRef, env string) (string, error) {
	switch {
	case ref != nil:
		if ref.Key != "" && ref.Key != ref.Name {
			return "", fmt.Errorf("secretKeyRef %s/%s: the environment store holds one key per secret, its name", ref.Name, ref.Key)
		}
		v, ok := os.LookupEnv(ref.Name)
		if !ok {
			return "", fmt.Errorf("secretKeyRef %s: no such environment variable", ref.Name)
		}
		return v, nil
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("envRef %s: no such environment variable", env)
		}
		return v, nil
	}
	return value, nil
}

func (d *tlsDocument) resolve() ([]byte, error) {
	if d == nil {
		return nil, nil
	}
	v, err := resolve(d.Value, d.SecretKeyRef, d.EnvRef)
	return []byte(v), err
}

// compileEndpoint builds one HTTPEndpoint resource.
func compileEndpoint(r *Resource) (*externalEndpoint, error) {
	var sp httpEndpointSpec
	if err := r.Spec.Decode(&sp); err != nil {
		return nil, err
	}
	base, err := parseBaseURL(sp.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("baseUrl: %w", err)
	}
	e := &externalEndpoint{name: r.Metadata.Name, base: base}
	for i, h := range sp.Headers {
		if h.Name == "" || !validHeaderName(h.Name) {
			return nil, fmt.Errorf("headers[%d]: invalid name %q", i, h.Name)
		}
		v, err := resolve(h.Value, h.SecretKeyRef, h.EnvRef)
		if err != nil {
			return nil, fmt.Errorf("headers[%d] (%s): %w", i, h.Name, err)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("headers[%d] (%s): value contains CR, LF or NUL", i, h.Name)
		}
		e.headers = append(e.headers, endpointHeader{http.CanonicalHeaderKey(h.Name), v})
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if t := sp.ClientTLS; t != nil {
		if base.Scheme != "https" {
			return nil, errors.New("clientTLS needs an https baseUrl")
		}
		ca, err := t.RootCA.resolve()
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
		cert, err := t.Certificate.resolve()
		if err != nil {
			return nil, fmt.Errorf("clientTLS.certificate: %w", err)
		}
		key, err := t.PrivateKey.resolve()
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

// validHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// compileEndpoints builds the HTTPEndpoint resources that apply to appID
// (no scopes, or appID among them); any error rejects the configuration.
func compileEndpoints(cfg Config, appID string) (map[string]*externalEndpoint, error) {
	var out map[string]*externalEndpoint
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
		if out == nil {
			out = map[string]*externalEndpoint{}
		}
		out[e.name] = e // a later one of the same name replaces an earlier one
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
