package httpendpoint

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/internal/yamlfield"
)

// Spec is an HTTPEndpoint's spec. The zero value is not valid: BaseURL is
// required. Decode builds one; callers may read but should not change it
// once shared.
type Spec struct {
	// BaseURL is where calls go: http or https, a host, an optional path
	// prefix; no user information, query or fragment.
	BaseURL string
	// Headers are added to every call, replacing any of the same name.
	Headers []Header
	// ClientTLS configures TLS to an https BaseURL; nil verifies the
	// server against the system's roots and sends no certificate.
	ClientTLS *ClientTLS
}

// Header is a header every call carries.
type Header struct {
	Name string
	Source
}

// ClientTLS is spec.clientTLS. Each document is nil when not given.
type ClientTLS struct {
	// RootCA are the PEM certificates the server's chain must end in,
	// instead of the system's roots.
	RootCA *Source
	// Certificate and PrivateKey are the PEM client certificate chain and
	// key, given together.
	Certificate, PrivateKey *Source
	// Renegotiation is Dapr's Never (default), OnceAsClient or
	// FreelyAsClient. Skein accepts all three and never renegotiates.
	Renegotiation string
}

// Source is a value: inline, or read from the environment. When several
// are set, SecretKeyRef wins, then EnvRef, then Value (Dapr's order).
type Source struct {
	// Value is the value itself.
	Value string
	// SecretKeyRef names a secret of the environment store: the variable
	// Name (Key, when set, must be Name too).
	SecretKeyRef *SecretRef
	// EnvRef names an environment variable.
	EnvRef string
}

// SecretRef is a secretKeyRef.
type SecretRef struct {
	Name, Key string
}

// Env is the environment variable s reads, "" for an inline value.
func (s Source) Env() string {
	switch {
	case s.SecretKeyRef != nil:
		return s.SecretKeyRef.Name
	case s.EnvRef != "":
		return s.EnvRef
	}
	return ""
}

// set reports whether s gives a value at all.
func (s *Source) set() bool {
	return s != nil && (s.Value != "" || s.SecretKeyRef != nil || s.EnvRef != "")
}

// Resolve returns s's value, reading a variable with lookup (os.LookupEnv
// in the sidecar).
func (s Source) Resolve(lookup func(string) (string, bool)) (string, error) {
	env := s.Env()
	if env == "" {
		return s.Value, nil
	}
	v, ok := lookup(env)
	if !ok {
		if s.SecretKeyRef != nil {
			return "", fmt.Errorf("secretKeyRef %s: no such environment variable", env)
		}
		return "", fmt.Errorf("envRef %s: no such environment variable", env)
	}
	return v, nil
}

// Decode reads an HTTPEndpoint's spec strictly: unknown fields are errors,
// each naming its path ("spec.headers[0].nmae: unknown field (line 7)").
// It does not Validate.
func Decode(n *yaml.Node) (*Spec, error) {
	var d yamlfield.Decoder
	sp := &Spec{}
	d.Mapping(n, "spec", func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "baseUrl":
			d.Str(v, path, &sp.BaseURL)
		case "headers":
			d.List(v, path, func(_ int, v *yaml.Node, path string) {
				var h Header
				d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
					if key == "name" {
						d.Str(v, path, &h.Name)
						return true
					}
					return decodeSource(&d, key, v, path, &h.Source)
				})
				sp.Headers = append(sp.Headers, h)
			})
		case "clientTLS":
			sp.ClientTLS = &ClientTLS{}
			d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
				doc := func() *Source {
					s := &Source{}
					d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
						return decodeSource(&d, key, v, path, s)
					})
					return s
				}
				switch key {
				case "rootCA":
					sp.ClientTLS.RootCA = doc()
				case "certificate":
					sp.ClientTLS.Certificate = doc()
				case "privateKey":
					sp.ClientTLS.PrivateKey = doc()
				case "renegotiation":
					d.Str(v, path, &sp.ClientTLS.Renegotiation)
				default:
					return false
				}
				return true
			})
		default:
			return false
		}
		return true
	})
	if err := d.Err(); err != nil {
		return nil, err
	}
	return sp, nil
}

// decodeSource decodes one key of a value's mapping; it reports whether
// it knows the key.
func decodeSource(d *yamlfield.Decoder, key string, v *yaml.Node, path string, s *Source) bool {
	switch key {
	case "value":
		d.Str(v, path, &s.Value)
	case "envRef":
		d.Str(v, path, &s.EnvRef)
	case "secretKeyRef":
		s.SecretKeyRef = &SecretRef{}
		d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
			switch key {
			case "name":
				d.Str(v, path, &s.SecretKeyRef.Name)
			case "key":
				d.Str(v, path, &s.SecretKeyRef.Key)
			default:
				return false
			}
			return true
		})
	default:
		return false
	}
	return true
}

// Validate reports every problem of sp, each naming its field. Values read
// from the environment are checked when they are resolved.
func (sp *Spec) Validate() error {
	var errs []error
	fail := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("spec.%s: %s", path, fmt.Sprintf(format, args...)))
	}
	base, err := ParseBaseURL(sp.BaseURL)
	if err != nil {
		fail("baseUrl", "%v", err)
	}
	for i, h := range sp.Headers {
		path := fmt.Sprintf("headers[%d]", i)
		if h.Name == "" || !ValidHeaderName(h.Name) {
			fail(path+".name", "invalid name %q", h.Name)
		}
		if err := h.validate(); err != nil {
			fail(path, "%v", err)
		} else if h.Env() == "" {
			if err := CheckValue(h.Value); err != nil {
				fail(path, "%v", err)
			}
		}
	}
	if t := sp.ClientTLS; t != nil {
		if base != nil && base.Scheme != "https" {
			fail("clientTLS", "clientTLS needs an https baseUrl")
		}
		for _, d := range []struct {
			name string
			s    *Source
		}{{"rootCA", t.RootCA}, {"certificate", t.Certificate}, {"privateKey", t.PrivateKey}} {
			if d.s != nil {
				if err := d.s.validate(); err != nil {
					fail("clientTLS."+d.name, "%v", err)
				}
			}
		}
		if t.RootCA.set() && t.RootCA.Env() == "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(t.RootCA.Value)) {
			fail("clientTLS.rootCA", "no PEM certificate")
		}
		switch {
		case t.Certificate.set() != t.PrivateKey.set():
			fail("clientTLS", "certificate and privateKey go together")
		case t.Certificate.set() && t.Certificate.Env() == "" && t.PrivateKey.Env() == "":
			if _, err := tls.X509KeyPair([]byte(t.Certificate.Value), []byte(t.PrivateKey.Value)); err != nil {
				fail("clientTLS", "certificate and key: %v", err)
			}
		}
		switch t.Renegotiation {
		case "", "Never", "OnceAsClient", "FreelyAsClient":
		default:
			fail("clientTLS.renegotiation", "%q: want Never, OnceAsClient or FreelyAsClient", t.Renegotiation)
		}
	}
	return errors.Join(errs...)
}

// validate checks a value's secret reference.
func (s *Source) validate() error {
	if r := s.SecretKeyRef; r != nil {
		switch {
		case r.Name == "":
			return errors.New("secretKeyRef.name: required")
		case r.Key != "" && r.Key != r.Name:
			return fmt.Errorf("secretKeyRef %s/%s: the environment store holds one key per secret, its name", r.Name, r.Key)
		}
	}
	return nil
}

// CheckValue refuses a header value that could split a request: CR, LF or
// NUL (RFC 9110 §5.5).
func CheckValue(v string) error {
	if strings.ContainsAny(v, "\r\n\x00") {
		return errors.New("value contains CR, LF or NUL")
	}
	return nil
}

// ParseBaseURL checks a base URL: http or https, a host, no user
// information, query or fragment.
func ParseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, err
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q: scheme must be http or https", s)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%q: no host", s)
	case u.User != nil, u.RawQuery != "", u.Fragment != "", u.ForceQuery:
		return nil, fmt.Errorf("%q: a base URL has no user information, query or fragment", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q: port %q: want 1-65535", s, p)
		}
	}
	return u, nil
}

// ValidHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func ValidHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}
