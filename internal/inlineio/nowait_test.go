package inlineio

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// readNoWait reads once without waiting, retrying a few times while the
// bytes written by the test are on their way over loopback.
func readNoWait(t *testing.T, c *Conn, r interface{ Read([]byte) (int, error) }, p []byte) (int, error) {
	t.Helper()
	c.SetReadNoWait(true)
	defer c.SetReadNoWait(false)
	var n int
	var err error
	for range 200 {
		if n, err = r.Read(p); !IsWouldBlock(err) {
			return n, err
		}
		time.Sleep(time.Millisecond)
	}
	return n, err
}

// TestReadNoWait: with SetReadNoWait on, a Read with nothing at hand fails
// at once with a temporary net.Error that IsWouldBlock recognises, and the
// connection reads on as before, waiting again once it is off.
func TestReadNoWait(t *testing.T) {
	client, server := pair(t)
	s := server.(*Conn)
	buf := make([]byte, 16)
	s.SetReadNoWait(true)
	n, err := s.Read(buf)
	s.SetReadNoWait(false)
	var ne net.Error
	if n != 0 || !IsWouldBlock(err) {
		t.Fatalf("Read with nothing at hand = %d, %v; want 0 and a would-block error", n, err)
	}
	if ok := asNetError(err, &ne); !ok || !ne.Temporary() { //nolint:staticcheck // crypto/tls keys on Temporary
		t.Fatalf("would-block error %v is not a temporary net.Error", err)
	}
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := readNoWait(t, s, s, buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v; want hello", buf[:n], err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = client.Write([]byte("later"))
	}()
	if n, err := s.Read(buf); err != nil || string(buf[:n]) != "later" {
		t.Fatalf("a waiting Read after SetReadNoWait(false) = %q, %v; want later", buf[:n], err)
	}
}

func asNetError(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	*ne = e
	return ok
}

// capture is a client connection whose writes, once held, are kept
// instead of sent, so the test can send a TLS record in pieces.
type capture struct {
	net.Conn
	hold bool
	kept []byte
}

func (c *capture) Write(p []byte) (int, error) {
	if c.hold {
		c.kept = append(c.kept, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestReadNoWaitUnderTLS: a TLS server reading without waiting through a
// record that has only half arrived gets the would-block error, and the
// connection is not broken by it: the record's second half completes it.
func TestReadNoWaitUnderTLS(t *testing.T) {
	rawClient, rawServer := pair(t)
	s := rawServer.(*Conn)
	cc := &capture{Conn: rawClient}
	tc, ts := handshake(t, cc, s)
	// TLS 1.3 servers send session tickets after the handshake; the client
	// reads them with its first Read, which this test never makes.
	cc.hold = true
	if _, err := tc.Write([]byte("a whole record")); err != nil {
		t.Fatal(err)
	}
	record := cc.kept
	half := len(record) / 2
	if _, err := rawClient.Write(record[:half]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	time.Sleep(20 * time.Millisecond) // the first half is at hand
	s.SetReadNoWait(true)
	n, err := ts.Read(buf)
	s.SetReadNoWait(false)
	if n != 0 || !IsWouldBlock(err) {
		t.Fatalf("Read of half a record = %d, %v; want a would-block error", n, err)
	}
	if _, err := rawClient.Write(record[half:]); err != nil {
		t.Fatal(err)
	}
	if n, err := readNoWait(t, s, ts, buf); err != nil || string(buf[:n]) != "a whole record" {
		t.Fatalf("Read after the second half = %q, %v; want the record", buf[:n], err)
	}
	cc.hold = false
	if _, err := tc.Write([]byte("next")); err != nil {
		t.Fatal(err)
	}
	if n, err := ts.Read(buf); err != nil || string(buf[:n]) != "next" {
		t.Fatalf("a waiting Read after = %q, %v; want next", buf[:n], err)
	}
}

// handshake runs TLS 1.3 over a connected pair (full-size records from
// the start) and returns both ends.
func handshake(t *testing.T, client, server net.Conn) (*tls.Conn, *tls.Conn) {
	t.Helper()
	tc := tls.Client(client, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, DynamicRecordSizingDisabled: true}) //nolint:gosec // a test's own certificate
	ts := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() { errc <- tc.Handshake() }()
	if err := ts.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return tc, ts
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestCork: Writes while corked go nowhere until Uncork sends them, in
// the order they were made, a concurrent Write's included; after Uncork
// Writes go out at once again.
func TestCork(t *testing.T) {
	client, server := pair(t)
	c := client.(*Conn)
	s := server.(*Conn)
	c.Cork(make([]byte, 0, 64))
	for _, p := range []string{"one ", "two "} {
		if n, err := c.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("corked Write = %d, %v", n, err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.Write([]byte("three "))
	}()
	<-done
	time.Sleep(20 * time.Millisecond)
	s.SetReadNoWait(true)
	n, err := s.Read(make([]byte, 64))
	s.SetReadNoWait(false)
	if !IsWouldBlock(err) {
		t.Fatalf("the peer read %d bytes, %v while corked; want nothing at hand", n, err)
	}
	buf, err := c.Uncork()
	if err != nil || string(buf) != "one two three " {
		t.Fatalf("Uncork = %q, %v; want the gathered writes", buf, err)
	}
	if _, err := c.Write([]byte("four")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, 64)
	for len(got) < len("one two three four") {
		p := make([]byte, 64)
		n, err := s.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p[:n]...)
	}
	if string(got) != "one two three four" {
		t.Fatalf("the peer read %q", got)
	}
}

// TestCorkUnderTLS: a long TLS write made while corked leaves as one
// gathered buffer holding all its records, which the peer decrypts whole.
func TestCorkUnderTLS(t *testing.T) {
	rawClient, rawServer := pair(t)
	c := rawClient.(*Conn)
	tc, ts := handshake(t, c, rawServer)
	want := make([]byte, 64<<10)
	for i := range want {
		want[i] = byte(i * 7)
	}
	c.Cork(make([]byte, 0, 1024))
	if _, err := tc.Write(want); err != nil {
		t.Fatal(err)
	}
	buf, err := c.Uncork()
	if err != nil {
		t.Fatal(err)
	}
	// Four records of 16 KiB, each with a 5-byte header, a content type
	// byte and a 16-byte tag.
	if min := len(want) + 4*22; len(buf) < min {
		t.Fatalf("Uncork sent %d bytes at once, want all four records (at least %d)", len(buf), min)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(ts, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the peer decrypted other bytes than were written")
	}
}
