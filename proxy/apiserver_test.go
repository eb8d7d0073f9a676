package proxy

import (
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
)

// bytewise splits s into one-byte chunks.
func bytewise(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i : i+1]
	}
	return out
}

// TestSplitH2C: a connection stays HTTP/1, every byte replayed, as soon as
// its bytes differ from the HTTP/2 preface, however they are cut; one that
// sends the whole preface goes to the h2c side with every byte read.
func TestSplitH2C(t *testing.T) {
	const settings = "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	tests := []struct {
		name     string
		chunks   []string
		h2       bool
		readByte bool // the HTTP/1 side reads a byte at a time
	}{
		{name: "HTTP/1", chunks: []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}},
		{name: "HTTP/1 a byte at a time", chunks: bytewise("POST / HTTP/1.1\r\n\r\n")},
		{name: "short garbage", chunks: []string{"GARBAGE\r\n\r\n"}},
		{name: "part of the preface, then HTTP/1", chunks: []string{"PRI", " * HTTP/1.1\r\n", "Host: x\r\n\r\n"}, readByte: true},
		{name: "all but the last byte of the preface", chunks: []string{h2Preface[:len(h2Preface)-1] + "X"}},
		{name: "preface and a frame at once", chunks: []string{h2Preface + settings}, h2: true},
		{name: "preface a byte at a time", chunks: append(bytewise(h2Preface), settings), h2: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			q := &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
			defer q.Close()
			sc := &sniffConn{Conn: server, h2: q}
			go func() {
				for _, c := range tt.chunks {
					if _, err := io.WriteString(client, c); err != nil {
						return
					}
				}
				client.Close()
			}()
			want := strings.Join(tt.chunks, "")
			if !tt.h2 {
				var r io.Reader = sc
				if tt.readByte {
					r = iotest.OneByteReader(sc)
				}
				got, err := io.ReadAll(r)
				if err != nil || string(got) != want {
					t.Fatalf("HTTP/1 side read %q, %v; want %q", got, err, want)
				}
				return
			}
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := q.Accept()
				if err == nil {
					accepted <- c
				}
				close(accepted)
			}()
			if n, err := sc.Read(make([]byte, 4096)); n != 0 || err != io.EOF {
				t.Fatalf("HTTP/1 side read %d, %v; want the end", n, err)
			}
			_ = sc.Close() // the HTTP/1 server lets go; the connection is no longer its
			h2, ok := <-accepted
			if !ok {
				t.Fatal("nothing handed to the h2c side")
			}
			got, err := io.ReadAll(h2)
			if err != nil || string(got) != want {
				t.Fatalf("h2c side read %q, %v; want %q", got, err, want)
			}
		})
	}
}
