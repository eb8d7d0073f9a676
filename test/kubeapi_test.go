package test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// kubeAPI is a real kube-apiserver and its etcd on loopback, started as
// controller-runtime's envtest starts them (test/peers/install.sh builds
// both): a serving certificate from a test CA, an admin bearer token in
// system:masters, and a service-account issuer and signing key, so that
// TokenRequest and TokenReview work. No scheduler, kubelet or controller
// manager runs: tests set pod status and create EndpointSlices themselves.
type kubeAPI struct {
	url        string // https://127.0.0.1:PORT
	token      string // the admin's bearer token
	caPEM      string // signs the serving certificate
	kubeconfig string // a kubeconfig file for the admin
	client     *http.Client
}

// startKubeAPI starts etcd and kube-apiserver in a temporary directory,
// waits for /readyz, and installs deploy/crds.
func startKubeAPI(t *testing.T) *kubeAPI {
	t.Helper()
	etcdBin, apiBin := peersBin(t, "etcd"), peersBin(t, "kube-apiserver")
	dir, err := os.MkdirTemp("", "kubeapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := newTestCA(t)
	certPEM, keyPEM, _ := ca.issue(t, true)
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, _ := x509.MarshalPKCS8PrivateKey(saKey)
	saPub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	k := &kubeAPI{token: hex.EncodeToString(tok), caPEM: ca.pem}

	m := newMesh(t)
	clientPort, peerPort := freePort(t), freePort(t)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	etcd := m.start("etcd", etcdBin, nil, "--name", "kt", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "kt="+peerURL, "--unsafe-no-fsync=true", "--log-level", "warn")

	port := freePort(t)
	k.url = "https://127.0.0.1:" + strconv.Itoa(port)
	api := m.start("kube-apiserver", apiBin, nil,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(port),
		// With a loopback advertise address the apiserver refuses to
		// reconcile the kubernetes Service's endpoints: nothing needs them.
		"--endpoint-reconciler-type", "none",
		"--cert-dir", filepath.Join(dir, "certs"),
		"--tls-cert-file", write("apiserver.crt", certPEM), "--tls-private-key-file", write("apiserver.key", keyPEM),
		"--client-ca-file", write("ca.crt", ca.pem),
		"--token-auth-file", write("tokens.csv", k.token+`,admin,admin-uid,"system:masters"`+"\n"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", k.url+"/",
		"--service-account-key-file", write("sa.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}))),
		"--service-account-signing-key-file", write("sa.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saDER}))),
		"--service-cluster-ip-range", "10.0.0.0/24",
		// No controller manager creates service accounts: pods name none.
		"--disable-admission-plugins", "ServiceAccount",
		"--allow-privileged=true")

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca.pem))
	k.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitFor(t, 90*time.Second, "kube-apiserver ready", func() bool {
		if etcd.exited() || api.exited() {
			t.Fatalf("etcd or kube-apiserver exited:\n--- etcd:\n%s\n--- kube-apiserver:\n%s", etcd.out, api.out)
		}
		code, _ := k.try("GET", "/readyz", nil, "")
		return code == http.StatusOK
	})

	k.kubeconfig = write("kubeconfig", fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kt
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kt
  context: {cluster: kt, user: admin}
current-context: kt
`, k.url, base64.StdEncoding.EncodeToString([]byte(ca.pem)), k.token))

	crds, _ := filepath.Glob(filepath.Join("..", "deploy", "crds", "*.yaml"))
	if len(crds) == 0 {
		t.Fatal("no CRDs in deploy/crds")
	}
	var names []string
	for _, f := range crds {
		obj := readYAML(t, f)
		k.must(t, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", obj)
		names = append(names, obj["metadata"].(map[string]any)["name"].(string))
	}
	for _, name := range names {
		waitFor(t, 30*time.Second, "CRD "+name+" established", func() bool {
			var crd struct {
				Status struct {
					Conditions []struct{ Type, Status string }
				}
			}
			_, b := k.try("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"+name, nil, "")
			_ = json.Unmarshal(b, &crd)
			for _, c := range crd.Status.Conditions {
				if c.Type == "Established" && c.Status == "True" {
					return true
				}
			}
			return false
		})
	}
	return k
}

// readYAML decodes a one-document YAML file.
func readYAML(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(b, &obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return obj
}

// try sends a request as the admin: body is JSON-encoded unless it is
// already []byte; contentType defaults to application/json.
func (k *kubeAPI) try(method, path string, body any, contentType string) (int, []byte) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, []byte(err.Error())
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, k.url+path, r)
	if err != nil {
		return 0, []byte(err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+k.token)
	req.Header.Set("Accept", "application/json")
	if contentType == "" {
		contentType = "application/json"
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := k.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// must sends a request and fails the test unless it answers 2xx; it
// returns the body.
func (k *kubeAPI) must(t *testing.T, method, path string, body any) []byte {
	t.Helper()
	ct := ""
	if method == "PATCH" {
		ct = "application/merge-patch+json"
	}
	code, b := k.try(method, path, body, ct)
	if code < 200 || code > 299 {
		t.Fatalf("%s %s: %d %s", method, path, code, strings.TrimSpace(string(b)))
	}
	return b
}
