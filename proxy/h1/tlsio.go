package h1

import (
	"crypto/tls"
	"io"
	"net"

	"github.com/skeinmesh/skein/internal/inlineio"
)

// Long bodies over TLS. crypto/tls reads one record (16 KiB at most) per
// Read and writes every record with a write(2) of its own, so a body
// relayed through it in 16 KiB pieces costs a syscall, and a wake-up of
// the reader on the other end, per record. On an internal/inlineio socket
// the server and the transport gather instead: a long Read returns every
// record already at hand (gather), and a long Write leaves in one write(2)
// (the socket's Cork). The 1 MiB POST through two sidecars: 67 to 19
// writes per POST in each, CPU per POST -21 % (caller) and -8 % (callee)
// (docs/performance.md, "Long bodies over TLS").

// noWaitReader is a socket that can read what is at hand without waiting
// (internal/inlineio.Conn).
type noWaitReader interface{ SetReadNoWait(on bool) }

// corker is a socket that can gather writes (internal/inlineio.Conn).
type corker interface {
	Cork(buf []byte)
	Uncork() ([]byte, error)
}

// tlsSocket returns the socket under nc when nc is a *tls.Conn on a
// socket that can read without waiting and gather writes; nils otherwise
// (a plain socket's read returns all that is at hand, and its writes are
// whole already).
func tlsSocket(nc net.Conn) (noWaitReader, corker) {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return nil, nil
	}
	under := tc.NetConn()
	nw, _ := under.(noWaitReader)
	ck, _ := under.(corker)
	return nw, ck
}

// gatherMin is the least room worth a read that does not wait.
const gatherMin = 2 << 10

// gather adds to p[:n], just read from r (a *tls.Conn on socket nw), what
// r has at hand without waiting, while p has gatherMin bytes of room.
// Only a long read gathers (p longer than a record: a body read straight
// into a copy buffer); heads and short bodies, read through a
// bufio.Reader's 4 KiB, never pay for the extra read that finds nothing.
func gather(r io.Reader, nw noWaitReader, p []byte, n int) (int, error) {
	if len(p) <= maxRecord || len(p)-n < gatherMin {
		return n, nil
	}
	nw.SetReadNoWait(true)
	defer nw.SetReadNoWait(false)
	for len(p)-n >= gatherMin {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			if inlineio.IsWouldBlock(err) {
				err = nil // nothing more at hand; crypto/tls keeps a part-read record
			}
			return n, err
		}
	}
	return n, nil
}

// corked runs write (a long write to a *tls.Conn) with its socket ck
// corked, so that its records leave in one write(2), gathered in buf.
func corked(ck corker, buf []byte, write func() (int, error)) (int, error) {
	ck.Cork(buf)
	n, err := write()
	if _, uerr := ck.Uncork(); err == nil {
		err = uerr
	}
	return n, err
}

// maxRecord is the most plaintext a TLS record carries: a write of more
// is worth corking.
const maxRecord = 16 << 10

// corkBuf gathers a corked write of up to copyBufSize bytes: the records'
// headers and tags (22 bytes each) take the slack, enough for the ~1.2 KiB
// records crypto/tls writes first on a new connection (about 55 for 64 KiB);
// a write that needs more still goes out whole, in a grown buffer.
type corkBuf [copyBufSize + 4<<10]byte
