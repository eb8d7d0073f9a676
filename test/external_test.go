package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for the external-endpoint tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue returns a certificate and key in PEM for a server (127.0.0.1) or
// a client.
func (ca *testCA) issue(t *testing.T, server bool) (certPEM, keyPEM string, pair tls.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = append(tmpl.IPAddresses, []byte{127, 0, 0, 1})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	pair, err = tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, pair
}

// indent prefixes every line of s, for a PEM value in YAML.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+prefix)
}

// TestExternalInvocation: invocation of services without a sidecar, by URL
// (path and header forms, URL-encoded too) and by HTTPEndpoint resources
// with headers (values and secrets from the environment) and client TLS,
// with resiliency applied and the endpoints listed in the metadata.
func TestExternalInvocation(t *testing.T) {
	m := newMesh(t)
	extPort, _ := m.app("ext") // a plain HTTP service, no sidecar
	ext := "http://127.0.0.1:" + strconv.Itoa(extPort)

	// An HTTPS service that requires a client certificate from ca.
	ca := newTestCA(t)
	_, _, serverPair := ca.issue(t, true)
	clientCert, clientKey, _ := ca.issue(t, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok-TLS "+r.URL.Path)
	}))
	tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	tlsSrv.StartTLS()
	defer tlsSrv.Close()

	dir := t.TempDir()
	writeFile(t, dir, "endpoints.yaml", `apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: orders-ext
spec:
  baseUrl: `+ext+`/base
  headers:
  - name: X-Static
    value: static-value
  - name: Authorization
    secretKeyRef:
      name: EXT_TOKEN
      key: EXT_TOKEN
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: secure
spec:
  baseUrl: `+tlsSrv.URL+`
  clientTLS:
    rootCA:
      value: |
`+indent(ca.pem, "        ")+`
    certificate:
      value: |
`+indent(clientCert, "        ")+`
    privateKey:
      envRef: EXT_CLIENT_KEY
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: secure-nocert
spec:
  baseUrl: `+tlsSrv.URL+`
  clientTLS:
    rootCA:
      value: |
`+indent(ca.pem, "        ")+`
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata:
  name: orders-root
spec:
  baseUrl: `+ext+`
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: ext-retries
spec:
  policies:
    retries:
      three:
        policy: constant
        duration: 10ms
        maxRetries: 3
  targets:
    apps:
      orders-root:
        retry: three
`)
	a := m.sidecarEnv("app-a", 0, []string{"EXT_TOKEN=Bearer s3cret", "EXT_CLIENT_KEY=" + clientKey}, "--resources-path", dir)

	echo := func(t *testing.T, req *http.Request) echoed {
		t.Helper()
		resp, body := do(t, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, body)
		}
		var e echoed
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return e
	}
	for _, tc := range []struct {
		name string
		req  *http.Request
	}{
		{"path form", newRequest(t, http.MethodPost, a.url("/v1.0/invoke/"+ext+"/method/orders/1?x=1"), strings.NewReader("hi"))},
		{"URL-encoded", newRequest(t, http.MethodPost, a.url("/v1.0/invoke/"+url.QueryEscape(ext)+"/method/orders/1?x=1"), strings.NewReader("hi"))},
		{"header form", func() *http.Request {
			r := newRequest(t, http.MethodPost, a.url("/orders/1?x=1"), strings.NewReader("hi"))
			r.Header.Set("dapr-app-id", ext)
			return r
		}()},
	} {
		t.Run("URL "+tc.name, func(t *testing.T) {
			e := echo(t, tc.req)
			if e.Method != "POST" || e.Path != "/orders/1" || e.Query != "x=1" || e.BodyLen != 2 || e.Host != "127.0.0.1:"+strconv.Itoa(extPort) {
				t.Errorf("service got %s %s?%s (%d bytes) for host %q", e.Method, e.Path, e.Query, e.BodyLen, e.Host)
			}
			if v := e.Header.Get("Dapr-App-Id"); v != "" {
				t.Errorf("dapr-app-id reached the service: %q", v)
			}
		})
	}

	t.Run("HTTPEndpoint with headers", func(t *testing.T) {
		e := echo(t, newRequest(t, http.MethodGet, a.invokeURL("orders-ext", "list"), nil))
		if e.Path != "/base/list" || e.Header.Get("X-Static") != "static-value" || e.Header.Get("Authorization") != "Bearer s3cret" {
			t.Errorf("service got %s with X-Static %q, Authorization %q", e.Path, e.Header.Get("X-Static"), e.Header.Get("Authorization"))
		}
	})

	t.Run("resiliency by endpoint name", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, a.invokeURL("orders-root", "flaky?fail=2"), nil)
		req.Header.Set("X-Count-Key", "ext-retry")
		resp, body := do(t, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("two failures then success with three retries: %d %s", resp.StatusCode, body)
		}
		if n := appCount(t, extPort, "ext-retry"); n != 3 {
			t.Errorf("the service was called %d times, want 3", n)
		}
	})

	t.Run("client TLS", func(t *testing.T) {
		resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("secure", "hello"), nil))
		if resp.StatusCode != http.StatusOK || string(body) != "ok-TLS /hello" {
			t.Errorf("with the client certificate: %d %q", resp.StatusCode, body)
		}
		resp, body = do(t, newRequest(t, http.MethodGet, a.invokeURL("secure-nocert", "hello"), nil))
		if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), `"errorCode":"ERR_DIRECT_INVOKE"`) {
			t.Errorf("without a client certificate: %d %s, want 500 ERR_DIRECT_INVOKE", resp.StatusCode, body)
		}
		// A URL target over TLS is verified against the system's roots:
		// the test CA is not one of them.
		resp, body = do(t, newRequest(t, http.MethodGet, a.url("/v1.0/invoke/"+url.QueryEscape(tlsSrv.URL)+"/method/hello"), nil))
		if resp.StatusCode != http.StatusInternalServerError {
			t.Errorf("unverifiable URL target: %d %s, want 500", resp.StatusCode, body)
		}
	})

	t.Run("WebSocket to a URL target", func(t *testing.T) {
		wsEcho(t, wsDial(t, wsURL(a.url("/v1.0/invoke/"+url.QueryEscape(ext)+"/method/ws")), nil))
	})

	t.Run("metadata lists the endpoints", func(t *testing.T) {
		resp, body := do(t, newRequest(t, http.MethodGet, a.url("/v1.0/metadata"), nil))
		var md struct {
			HTTPEndpoints []struct{ Name string } `json:"httpEndpoints"`
		}
		if err := json.Unmarshal(body, &md); err != nil || resp.StatusCode != 200 {
			t.Fatalf("metadata: %d %s", resp.StatusCode, body)
		}
		var names []string
		for _, e := range md.HTTPEndpoints {
			names = append(names, e.Name)
		}
		if strings.Join(names, ",") != "orders-ext,orders-root,secure,secure-nocert" {
			t.Errorf("httpEndpoints %v", names)
		}
	})

	t.Run("bad URL targets", func(t *testing.T) {
		for _, target := range []string{"http%3A%2F%2F", "https%3A%2F%2Fuser%3Apw%40127.0.0.1%3A1"} {
			resp, body := do(t, newRequest(t, http.MethodGet, a.url("/v1.0/invoke/"+target+"/method/x"), nil))
			if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "INVALID_APP_ID") {
				t.Errorf("target %s: %d %s, want 500 INVALID_APP_ID", target, resp.StatusCode, body)
			}
		}
	})
}
