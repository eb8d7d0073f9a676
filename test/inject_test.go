package test

import (
	"bytes"
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
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// skeinInject runs the built `skein inject` with stdin and returns its
// exit code, stdout and stderr.
func skeinInject(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin.skein, append([]string{"inject"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestInjectDaprManifests runs `skein inject` on Dapr's sample manifests
// (inject/testdata): the output is the golden file the inject package's
// tests pin, injecting it again changes nothing, and a bad annotation
// fails naming the document and the field with nothing on stdout.
func TestInjectDaprManifests(t *testing.T) {
	for _, name := range []string{"hello-kubernetes", "service-invocation"} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join("..", "inject", "testdata", name+".yaml")
			golden, err := os.ReadFile(filepath.Join("..", "inject", "testdata", name+".golden.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			code, out, errs := skeinInject(t, nil, "-f", src, "--sidecar-image", "ghcr.io/skeinmesh/skein:test")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if diff := cmp.Diff(string(golden), out); diff != "" {
				t.Errorf("output (-golden +got):\n%s", diff)
			}
			if !strings.Contains(errs, "injected (app id ") {
				t.Errorf("stderr %q says nothing was injected", errs)
			}

			code, again, errs := skeinInject(t, []byte(out), "-f", "-", "--sidecar-image", "ghcr.io/skeinmesh/skein:test")
			if code != 0 || again != out {
				t.Errorf("second injection: exit %d, changed %v; stderr %s", code, again != out, errs)
			}
			if strings.Contains(errs, " injected") || !strings.Contains(errs, "skipped: the pod already has a daprd container") {
				t.Errorf("second injection's stderr %q: want every pod skipped as injected", errs)
			}
		})
	}
	t.Run("warnings name the document", func(t *testing.T) {
		_, _, errs := skeinInject(t, nil, "-f", filepath.Join("..", "inject", "testdata", "service-invocation.yaml"))
		want := "service-invocation.yaml: document 2 (line 18, Deployment order-processor): warning: dapr.io/enable-profiling: ignored: Skein serves no pprof endpoint"
		if !strings.Contains(errs, want) {
			t.Errorf("stderr %q lacks %q", errs, want)
		}
	})
	t.Run("bad annotation", func(t *testing.T) {
		code, out, errs := skeinInject(t, nil, "-f", filepath.Join("..", "inject", "testdata", "bad-app-port.yaml"))
		want := `document 2 (line 8, Deployment orders): spec.template.metadata.annotations[dapr.io/app-port]: "http": not a port (1-65535)`
		if code != 1 || out != "" || !strings.Contains(errs, want) || !strings.Contains(errs, "annotations[dapr.io/log-level]") {
			t.Errorf("exit %d, stdout %q, stderr %q: want 1, nothing, and %q", code, out, errs, want)
		}
	})
}

// webhookCert writes a self-signed serving certificate for 127.0.0.1.
func webhookCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "skein-control-plane.skein-system.svc"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestWebhookInjectedSidecarRuns: `skein control-plane --webhook-listen`
// answers the API server's AdmissionReview for a Dapr pod over TLS; the
// returned JSON Patch applied to the pod gives a daprd container whose
// command, run as the kubelet would run it (its environment from the pod:
// namespace, pod IP, the join token Secret), starts a sidecar that gets
// its SVID from that control plane, registers, and passes its probe.
func TestWebhookInjectedSidecarRuns(t *testing.T) {
	m := newMesh(t)
	certFile, keyFile, pool := webhookCert(t, t.TempDir())
	cpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	whAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cp := m.start("control-plane", bin.skein, nil, "control-plane", "--listen-address", cpAddr, "--join-token", xdsToken,
		"--webhook-listen", whAddr, "--webhook-cert", certFile, "--webhook-key", keyFile,
		"--webhook-sidecar-image", "ghcr.io/skeinmesh/skein:e2e", "--webhook-control-plane-address", cpAddr)
	waitFor(t, 10*time.Second, "webhook listening", func() bool {
		if cp.exited() {
			t.Fatalf("control plane exited: %v\n%s", cp.err, cp.out)
		}
		return strings.Contains(cp.out.String(), "injection webhook listening")
	})

	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{
			"generateName": "pythonapp-6b9f7c8d4-", "namespace": "shop",
			"labels":      map[string]any{"app": "python", "pod-template-hash": "6b9f7c8d4"},
			"annotations": map[string]any{"dapr.io/enabled": "true", "dapr.io/app-id": "pythonapp", "dapr.io/enable-api-logging": "true", "dapr.io/log-level": "debug"},
			"ownerReferences": []any{map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "pythonapp-6b9f7c8d4",
				"uid": "9c1d7e4e-3a0b-4e21-8d55-5b0b9d6f3a10", "controller": true, "blockOwnerDeletion": true}},
		},
		"spec": map[string]any{"containers": []any{map[string]any{"name": "python", "image": "ghcr.io/dapr/samples/hello-k8s-python:latest"}}},
	}
	review := map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": map[string]any{
		"uid": "1f2e3d4c-0000-4000-8000-000000000001", "kind": map[string]any{"group": "", "version": "v1", "kind": "Pod"},
		"resource": map[string]any{"group": "", "version": "v1", "resource": "pods"}, "namespace": "shop", "operation": "CREATE",
		"userInfo": map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller"}, "object": pod,
	}}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := cl.Post("https://"+whAddr+"/mutate", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ar struct {
		Response struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
			Patch   []byte `json:"patch"`
		} `json:"response"`
	}
	if err := json.Unmarshal(answer, &ar); err != nil || !ar.Response.Allowed || ar.Response.UID != "1f2e3d4c-0000-4000-8000-000000000001" || len(ar.Response.Patch) == 0 {
		t.Fatalf("status %d, answer %s (%v): want allowed with a patch", resp.StatusCode, answer, err)
	}
	patch, err := jsonpatch.DecodePatch(ar.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	podJSON, _ := json.Marshal(pod)
	patched, err := patch.Apply(podJSON)
	if err != nil {
		t.Fatalf("apply %s: %v", ar.Response.Patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Containers) != 2 || got.Spec.Containers[1].Name != "daprd" || got.Spec.Containers[1].Image != "ghcr.io/skeinmesh/skein:e2e" {
		t.Fatalf("containers %+v: want python and daprd with the webhook's image", got.Spec.Containers)
	}
	daprd := got.Spec.Containers[1]

	// The kubelet's part: the environment from the pod, the command as given.
	var env []string
	for _, e := range daprd.Env {
		switch {
		case e.Name == "SKEIN_HOME": // an emptyDir in the pod; here the mesh's own temporary directory
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env = append(env, e.Name+"="+map[string]string{"metadata.namespace": "shop", "status.podIP": "127.0.0.1"}[e.ValueFrom.FieldRef.FieldPath])
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			if ref := e.ValueFrom.SecretKeyRef; ref.Name != "skein-join-token" || ref.Key != "token" {
				t.Fatalf("env %s from Secret %s key %s: want skein-join-token's token", e.Name, ref.Name, ref.Key)
			}
			env = append(env, e.Name+"="+xdsToken)
		default:
			env = append(env, e.Name+"="+e.Value)
		}
	}
	// A shared test machine: the fixed ports and the pod-wide addresses are
	// rebound to free loopback ones (a later flag wins).
	httpPort, publicPort := freePort(t), freePort(t)
	// The projected service-account token the kubelet would mount; this
	// control plane (not --kubernetes) ignores it and takes the join token.
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("projected-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string(nil), daprd.Args...),
		"--kubernetes-token-file", tokenFile,
		"--dapr-http-port", strconv.Itoa(httpPort), "--dapr-grpc-port", strconv.Itoa(freePort(t)),
		"--dapr-internal-grpc-port", strconv.Itoa(freePort(t)), "--dapr-internal-grpc-listen-address", "127.0.0.1",
		"--metrics-port", strconv.Itoa(freePort(t)), "--metrics-listen-address", "127.0.0.1",
		"--dapr-public-port", strconv.Itoa(publicPort), "--dapr-public-listen-address", "127.0.0.1")
	sc := m.start("injected sidecar", bin.skein, env, args...)

	probe := daprd.ReadinessProbe.HTTPGet
	if probe == nil || probe.Port.IntVal != 3501 {
		t.Fatalf("readiness probe %+v: want an HTTP GET on the public port 3501", daprd.ReadinessProbe)
	}
	waitFor(t, 20*time.Second, "the injected sidecar ready and its probe passing", func() bool {
		if sc.exited() {
			t.Fatalf("injected sidecar exited: %v\n%s", sc.err, sc.out)
		}
		ready, err := http.Get("http://127.0.0.1:" + strconv.Itoa(httpPort) + "/v1.0/healthz")
		if err != nil {
			return false
		}
		ready.Body.Close()
		probed, err := http.Get("http://127.0.0.1:" + strconv.Itoa(publicPort) + probe.Path)
		if err != nil {
			return false
		}
		probed.Body.Close()
		return ready.StatusCode == http.StatusNoContent && probed.StatusCode == http.StatusNoContent
	})
	if out := sc.out.String(); !strings.Contains(out, "sidecar ready") {
		t.Errorf("sidecar output lacks its readiness:\n%s", out)
	}
}
