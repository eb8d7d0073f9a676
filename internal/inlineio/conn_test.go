package inlineio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// pair returns a connected client and server, both wrapped.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := Listener{Listener: ln}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	client = Wrap(c)
	t.Cleanup(func() { client.Close(); s.Close() })
	return client, s
}

func TestWrapOnlyTCP(t *testing.T) {
	c, s := pair(t)
	if _, ok := c.(*Conn); !ok {
		t.Fatalf("Wrap(*net.TCPConn) = %T, want *Conn", c)
	}
	if _, ok := s.(*Conn); !ok {
		t.Fatalf("Listener.Accept = %T, want *Conn", s)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if got := Wrap(p1); got != p1 {
		t.Fatalf("Wrap(pipe) = %T, want the pipe unchanged", got)
	}
}

// TestLargeBothWays moves 4 MiB each way at once, through writes small
// (inline) and large (the net package's path), and reads of every size.
func TestLargeBothWays(t *testing.T) {
	c, s := pair(t)
	const size = 4 << 20
	up, down := make([]byte, size), make([]byte, size)
	rand.Read(up)
	rand.Read(down)
	send := func(conn net.Conn, data []byte, chunks []int) error {
		for i := 0; len(data) > 0; i++ {
			n := min(chunks[i%len(chunks)], len(data))
			w, err := conn.Write(data[:n])
			if err != nil {
				return err
			}
			if w != n {
				return io.ErrShortWrite
			}
			data = data[n:]
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	got := make([][]byte, 2)
	wg.Add(4)
	go func() {
		defer wg.Done()
		errs <- send(c, up, []int{1, 100, inlineWriteMax, inlineWriteMax + 1, 1 << 20})
	}()
	go func() { defer wg.Done(); errs <- send(s, down, []int{7, 4096, 64 << 10}) }()
	go func() {
		defer wg.Done()
		var b bytes.Buffer
		_, err := io.CopyN(&b, s, size)
		got[0] = b.Bytes()
		errs <- err
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 3000)
		var b bytes.Buffer
		for b.Len() < size {
			n, err := c.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				errs <- err
				return
			}
		}
		got[1] = b.Bytes()
		errs <- nil
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got[0], up) || !bytes.Equal(got[1], down) {
		t.Fatal("bytes differ after the round trip")
	}
}

func TestEOFAndErrors(t *testing.T) {
	c, s := pair(t)
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v", n, err)
	}
	if _, err := s.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, err := io.ReadAll(c)
	if string(b) != "bye" || err != nil {
		t.Fatalf("ReadAll = %q, %v; want \"bye\", nil (io.EOF at the end)", b, err)
	}
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want io.EOF", n, err)
	}
	// Writing to a closed peer fails with a syscall error sooner or later
	// (the first write may be accepted before the RST arrives).
	var werr error
	for range 100 {
		if _, werr = c.Write([]byte("x")); werr != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var oe *net.OpError
	if !errors.As(werr, &oe) || oe.Op != "write" {
		t.Fatalf("write to a closed peer: %v, want a *net.OpError with Op write", werr)
	}
	c.Close()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

func TestDeadlines(t *testing.T) {
	c, _ := pair(t)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v, want a timeout", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read past its deadline: %v, want Op read", err)
	}
	// Nobody reads the other side: the socket fills and the write waits
	// for room until its deadline.
	c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	chunk := make([]byte, 4096)
	for {
		if _, err = c.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write to a full socket past its deadline: %v, want a timeout", err)
	}
}

// TestCloseUnblocksRead: a Read waiting for data returns when another
// goroutine closes the connection, as for any net.Conn.
func TestCloseUnblocksRead(t *testing.T) {
	c, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Read")
	}
}
