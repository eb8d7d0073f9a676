package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestControlPlaneRejectsBadWebhookFlags: the webhook's flags fail fast,
// on one line, before anything listens.
func TestControlPlaneRejectsBadWebhookFlags(t *testing.T) {
	t.Setenv("SKEIN_HOME", t.TempDir())
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"control-plane", "--listen-address", "127.0.0.1:0"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no cert", []string{"--webhook-listen", "127.0.0.1:0"}, "required with --webhook-listen"},
		{"cert without listen", []string{"--webhook-cert", junk, "--webhook-key", junk}, "only with --webhook-listen"},
		{"bad cert", []string{"--webhook-listen", "127.0.0.1:0", "--webhook-cert", junk, "--webhook-key", junk}, "--webhook-cert, --webhook-key"},
		{"bad address", []string{"--webhook-listen", "nowhere", "--webhook-cert", junk, "--webhook-key", junk}, "--webhook-listen"},
		{"bad injector option", []string{"--webhook-listen", "127.0.0.1:0", "--webhook-cert", junk, "--webhook-key", junk, "--webhook-control-plane-address", "x"}, "control plane address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append(append([]string(nil), base...), tt.args...), &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tt.want) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
				t.Errorf("exit %d, stderr %q: want 2 and one line naming %q", code, errb.String(), tt.want)
			}
		})
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, certFile, keyFile, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestWebhookServes: with --webhook-listen the control plane's webhook
// answers AdmissionReviews over TLS beside the control plane, picks up a
// rotated certificate, and stops with it.
func TestWebhookServes(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeCert(t, certFile, keyFile, "first")

	// A free port, for --webhook-listen.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	w := &webhookFlags{listen: addr, cert: certFile, key: keyFile}
	w.opts.Image = "skein:test"
	if err := w.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- w.serveWith(ctx, slog.New(slog.DiscardHandler), func(ctx context.Context) error {
			<-ctx.Done() // the control plane, serving until told to stop
			return nil
		})
	}()

	// client trusts exactly cert, on a new connection each time.
	client := func(cert *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
	}
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},
		"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","operation":"CREATE","userInfo":{"username":"admin"},
		"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","annotations":{"dapr.io/enabled":"true"}},"spec":{"containers":[{"name":"a","image":"a"}]}}}}`
	var resp *http.Response
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err = client(first).Post("https://"+addr+"/mutate", "application/json", strings.NewReader(review))
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // until it listens
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct {
		Response struct {
			UID       string `json:"uid"`
			Allowed   bool   `json:"allowed"`
			PatchType string `json:"patchType"`
		} `json:"response"`
	}
	if err := json.Unmarshal(body, &out); err != nil || !out.Response.Allowed || out.Response.UID != "u1" || out.Response.PatchType != "JSONPatch" {
		t.Fatalf("status %d, %s (%v): want allowed with a JSONPatch", resp.StatusCode, body, err)
	}

	// Rotate the certificate in place: the next handshake has the new one.
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	second := writeCert(t, certFile, keyFile, "second")
	if r, err := client(second).Get("https://" + addr + "/healthz"); err != nil {
		t.Errorf("after rotation: %v", err)
	} else if r.Body.Close(); r.StatusCode != http.StatusNoContent {
		t.Errorf("healthz %d, want 204", r.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serveWith: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook did not stop")
	}
}
