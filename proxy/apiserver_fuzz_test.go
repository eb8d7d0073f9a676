package proxy

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// oneConnListener accepts one connection, then waits until it is closed.
type oneConnListener struct {
	c    chan net.Conn
	done chan struct{}
	once sync.Once
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{c: make(chan net.Conn, 1), done: make(chan struct{})}
	l.c <- c
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// FuzzSplitH2C feeds a client's first bytes, cut into writes of any size
// and read by the HTTP/1 side in reads of any size, through splitH2C's
// sniffing: it never panics or hangs, a connection that opens with the
// whole HTTP/2 preface goes to the h2c side and anything else stays
// HTTP/1, and whichever side gets it reads the client's bytes exactly, as
// sent. The HTTP/1 side closing its connection after a hand-over does not
// close it under the h2c side.
func FuzzSplitH2C(f *testing.F) {
	const settings = "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	for _, seed := range []string{
		"", "G", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GARBAGE\r\n\r\n", "PRI\r\n\r\n",
		"PRI * HTTP/1.1\r\nHost: x\r\n\r\n", h2Preface[:len(h2Preface)-1], h2Preface[:len(h2Preface)-1] + "X",
		h2Preface, h2Preface + settings, h2Preface + "GET / HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(seed), uint8(0), uint8(0))
		f.Add([]byte(seed), uint8(1), uint8(1))
		f.Add([]byte(seed), uint8(3), uint8(7))
	}
	f.Fuzz(func(t *testing.T, data []byte, writeSize, readSize uint8) {
		client, server := net.Pipe()
		defer client.Close()
		// A hang guard: a sniff that waits forever fails on its deadline.
		guard := time.Now().Add(10 * time.Second)
		_ = client.SetDeadline(guard)
		_ = server.SetDeadline(guard)
		h1ln, h2ln := splitH2C(newOneConnListener(server))
		defer h1ln.Close()
		defer h2ln.Close()

		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { // the client: its bytes in writes of writeSize (0: all at once), then the end
			for b := data; len(b) > 0; {
				n := len(b)
				if writeSize > 0 {
					n = min(n, int(writeSize))
				}
				if _, err := client.Write(b[:n]); err != nil {
					return
				}
				b = b[n:]
			}
			_ = client.Close()
		})
		var h2got []byte
		var h2err error
		handed := make(chan bool, 1)
		wg.Go(func() { // the h2c server
			c, err := h2ln.Accept()
			if err != nil {
				handed <- false
				return
			}
			handed <- true
			defer c.Close()
			h2got, h2err = io.ReadAll(c)
		})

		c, err := h1ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		// The HTTP/1 server: reads of readSize (0: 4 KiB) until the end.
		buf := make([]byte, cmp.Or(int(readSize), 4096))
		var h1got []byte
		var h1err error
		for {
			n, err := c.Read(buf)
			h1got = append(h1got, buf[:n]...)
			if err != nil {
				if err != io.EOF {
					h1err = err
				}
				break
			}
		}
		_ = c.Close()    // as net/http does at the end of a connection
		_ = h2ln.Close() // no hand-over after the HTTP/1 side ended
		wasHanded := <-handed
		if !wasHanded {
			_ = client.Close() // nobody reads on: let the client go
		}
		wg.Wait()

		if errors.Is(h1err, os.ErrDeadlineExceeded) || errors.Is(h2err, os.ErrDeadlineExceeded) {
			t.Fatalf("%q (writes of %d, reads of %d): hung until the guard's deadline", data, writeSize, readSize)
		}
		wantH2 := bytes.HasPrefix(data, []byte(h2Preface))
		switch {
		case wasHanded != wantH2:
			t.Fatalf("%q: handed to h2c = %v, want %v", data, wasHanded, wantH2)
		case wantH2 && (len(h1got) != 0 || h1err != nil):
			t.Fatalf("%q: the HTTP/1 side read %q, %v before the hand-over, want nothing", data, h1got, h1err)
		case wantH2 && (!bytes.Equal(h2got, data) || h2err != nil):
			t.Fatalf("%q: the h2c side read %q, %v; want every byte sent", data, h2got, h2err)
		case !wantH2 && (!bytes.Equal(h1got, data) || h1err != nil):
			t.Fatalf("%q: the HTTP/1 side read %q, %v; want every byte sent", data, h1got, h1err)
		}
	})
}
