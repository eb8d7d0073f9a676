package test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// haFlags run a control-plane replica with fast elections (the Lease
// expires 3 s after its last renewal) and SVIDs renewed every 5 s, so a
// rotation reaches the sidecars within the test.
var haFlags = []string{
	"--namespace", "skein-system", "--leader-elect-lease-duration", "3s",
	"--leader-elect-renew-deadline", "2s", "--leader-elect-retry-period", "300ms", "--svid-ttl", "10s",
}

const (
	haLeasePath  = "/apis/coordination.k8s.io/v1/namespaces/skein-system/leases/skein-control-plane"
	haSecretPath = "/api/v1/namespaces/skein-system/secrets/skein-ca"
)

// haLease reads the replicas' Lease: its holder and transitions.
func haLease(t *testing.T, k *kubeAPI) (string, int) {
	t.Helper()
	var l struct {
		Spec struct {
			HolderIdentity   string
			LeaseTransitions int
		}
	}
	if err := json.Unmarshal(k.must(t, "GET", haLeasePath, nil), &l); err != nil {
		t.Fatal(err)
	}
	return l.Spec.HolderIdentity, l.Spec.LeaseTransitions
}

// haSecret reads the CA Secret: its root certificate and annotations.
func haSecret(t *testing.T, k *kubeAPI) (*x509.Certificate, map[string]string) {
	t.Helper()
	var s struct {
		Metadata struct{ Annotations map[string]string }
		Data     map[string]string
	}
	if err := json.Unmarshal(k.must(t, "GET", haSecretPath, nil), &s); err != nil {
		t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(s.Data["root.crt"])
	if err != nil {
		t.Fatalf("root.crt: %v", err)
	}
	certs := parsePEMCerts(t, b)
	return certs[0], s.Metadata.Annotations
}

func parsePEMCerts(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no PEM certificate")
	}
	return out
}

// servedChain is the certificate chain a TLS server at addr presents
// (the handshake may then fail for want of a client certificate: the
// chain is read before that).
func servedChain(t *testing.T, addr string) []*x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true, // the test checks the chain itself below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			for _, r := range raw {
				x, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				chain = append(chain, x)
			}
			return nil
		},
	})
	if err == nil {
		c.Close()
	}
	if len(chain) == 0 {
		t.Fatalf("%s presented no certificate: %v", addr, err)
	}
	return chain
}

// chainsTo reports whether chain (leaf first) verifies against root.
func chainsTo(chain []*x509.Certificate, root *x509.Certificate) bool {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// leading waits until the replica's status says it leads and returns
// its replica identity.
func leading(t *testing.T, cp *controlPlane) string {
	t.Helper()
	var id string
	waitFor(t, 30*time.Second, "replica "+cp.addr+" leads", func() bool {
		st := cp.status(t)
		id, _ = st["replica"].(string)
		return st["leading"] == true
	})
	return id
}

// TestKubernetesHA: two control-plane replicas against a real
// kube-apiserver. One holds the Lease; both serve ADS and sign with the CA
// of one Secret, created once. Under steady calls between two sidecars,
// the leader is killed (SIGKILL): no call fails, the other replica takes
// the Lease, the sidecars reconnect to it (a pod added after the kill
// reaches the caller), and a CA rotation asked of the new leader reaches
// both sidecars and the restarted replica.
func TestKubernetesHA(t *testing.T) {
	k := startKubeAPI(t)
	for _, ns := range []string{"shop", "skein-system"} {
		k.must(t, "POST", "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": ns}})
	}
	net := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), 1+rand.IntN(250))
	caller := k.createPod(t, "shop", "caller-0", "caller", net+"2", nil)
	callee0 := k.createPod(t, "shop", "callee-0", "callee", net+"3", nil)

	a := startKubeControlPlane(t, k, haFlags...)
	aID := leading(t, a)
	b := startKubeControlPlane(t, k, haFlags...)
	bID, _ := b.status(t)["replica"].(string)

	t.Run("one replica holds the Lease, both sign with one CA created once", func(t *testing.T) {
		holder, transitions := haLease(t, k)
		if holder != aID || transitions != 0 {
			t.Errorf("lease held by %q with %d transitions, want %q (the first replica) with 0", holder, transitions, aID)
		}
		if st := b.status(t); st["leading"] == true || st["leader"] != aID || bID == "" || bID == aID {
			t.Errorf("second replica's status: leading %v, leader %v, replica %q; want a follower of %q", st["leading"], st["leader"], bID, aID)
		}
		if n := strings.Count(a.out.String()+b.out.String(), `msg="ca created"`); n != 1 {
			t.Errorf("the CA was created %d times, want once", n)
		}
		if !strings.Contains(b.out.String(), `msg="ca loaded"`) {
			t.Error("the second replica did not load the CA from the Secret")
		}
		root, _ := haSecret(t, k)
		for _, cp := range []*controlPlane{a, b} {
			if !chainsTo(servedChain(t, cp.addr), root) {
				t.Errorf("replica %s's certificate does not chain to the Secret's root", cp.addr)
			}
		}
	})

	// Each sidecar lists both replicas, in another order: the caller's
	// ADS stream goes to the leader, the callee's to the follower.
	both := &controlPlane{addr: a.addr + "," + b.addr}
	rev := &controlPlane{addr: b.addr + "," + a.addr}
	runPod(t, both, caller)
	runPod(t, rev, callee0)
	untilEndpoints(t, caller.s, "callee", "callee.shop", true, callee0)
	untilEndpoints(t, callee0.s, "caller", "caller.shop", true, caller)
	for _, c := range []struct {
		s    *sidecar
		peer string
	}{{caller.s, a.addr}, {callee0.s, b.addr}} {
		if !strings.Contains(c.s.proc.out.String(), `msg="xds connected"`) || !strings.Contains(c.s.proc.out.String(), "peer="+c.peer) {
			t.Errorf("%s's ADS stream is not served by %s", c.s.appID, c.peer)
		}
	}

	out := startSteady(caller.s, "callee", "echo")
	back := startSteady(callee0.s, "caller", "echo")
	time.Sleep(300 * time.Millisecond) // some calls before the kill

	t.Run("the leader is killed: the other replica takes over", func(t *testing.T) {
		a.signal(syscall.SIGKILL)
		if got := leading(t, b); got != bID {
			t.Fatalf("the second replica leads as %q, want %q", got, bID)
		}
		holder, transitions := haLease(t, k)
		if holder != bID || transitions != 1 {
			t.Errorf("lease held by %q with %d transitions, want %q with 1", holder, transitions, bID)
		}
	})

	t.Run("the sidecars reconnect: a pod added after the kill reaches them", func(t *testing.T) {
		callee1 := k.createPod(t, "shop", "callee-1", "callee", net+"4", nil)
		runPod(t, rev, callee1)
		untilEndpoints(t, caller.s, "callee", "callee.shop", true, callee0, callee1)
		// The caller's stream was on the killed replica: it moved.
		if n := strings.Count(caller.s.proc.out.String(), "peer="+b.addr); n == 0 {
			t.Errorf("the caller's ADS stream never reached %s", b.addr)
		}
	})

	t.Run("a CA rotation by the new leader reaches the sidecars and a restarted replica", func(t *testing.T) {
		oldRoot, _ := haSecret(t, k)
		k.must(t, "PATCH", haSecretPath, map[string]any{"metadata": map[string]any{"annotations": map[string]any{"skein.io/rotate": "root"}}})
		var root *x509.Certificate
		waitFor(t, 20*time.Second, "the rotation stored", func() bool {
			var ann map[string]string
			root, ann = haSecret(t, k)
			return ann["skein.io/rotate"] == "" && strings.HasSuffix(ann["skein.io/rotated"], " by "+bID)
		})
		if root.Equal(oldRoot) {
			t.Fatal("the rotation kept the root")
		}
		for _, p := range []*kubePod{caller, callee0} {
			addr := p.ip + ":" + strconv.Itoa(p.peer)
			waitFor(t, 30*time.Second, p.name+"'s SVID from the new root", func() bool {
				return chainsTo(servedChain(t, addr), root)
			})
		}
		// The killed replica comes back (as its Deployment would restart
		// it): it signs with the rotated CA and follows the new leader.
		a2 := startKubeControlPlane(t, k, haFlags...)
		if !chainsTo(servedChain(t, a2.addr), root) {
			t.Error("the restarted replica's certificate does not chain to the rotated root")
		}
		if st := a2.status(t); st["leading"] == true || st["leader"] != bID {
			t.Errorf("restarted replica: leading %v, leader %v; want a follower of %q", st["leading"], st["leader"], bID)
		}
	})

	out.end(t, "caller → callee across the failover and the rotation")
	back.end(t, "callee → caller across the failover and the rotation")
}
