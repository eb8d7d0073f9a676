package inlineio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Conn is a *net.TCPConn whose Read and Write make their syscalls inline.
// It is safe for one concurrent reader and one concurrent writer, as a
// net.Conn is.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
	r  op // the read in progress: guarded by the fd's read lock
	w  op // the write in progress: guarded by the fd's write lock

	noWait bool // Read does not wait for data: set and read by the reader

	// Cork's gathering: a Write while corked appends to cbuf. cmu orders
	// every Write of a Conn that has been corked with Uncork's, so nothing
	// written meanwhile (crypto/tls answering a KeyUpdate from its reader)
	// overtakes what was gathered.
	cmu    sync.Mutex
	corked bool        // guarded by cmu
	cbuf   []byte      // guarded by cmu
	used   atomic.Bool // Cork has been called: Writes take cmu
}

// op is one Read or Write's state, bound once to a method value so that a
// call allocates nothing.
type op struct {
	buf []byte
	n   int
	err syscall.Errno
	fn  func(fd uintptr) bool
}

// Wrap returns c as a *Conn when it is a *net.TCPConn, else c unchanged.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	ic := &Conn{TCPConn: tc, rc: rc}
	ic.r.fn = ic.read
	ic.w.fn = ic.write
	return ic
}

// Read reads as (*net.TCPConn).Read does: io.EOF when the peer has closed
// its side, the connection's read deadline honoured.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.r.buf, c.r.n, c.r.err = b, 0, 0
	err := c.rc.Read(c.r.fn)
	n, errno := c.r.n, c.r.err
	c.r.buf = nil
	switch {
	case err != nil:
		return 0, opError(c, "read", err)
	case errno != 0:
		return 0, opError(c, "read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.r.buf[0])), uintptr(len(c.r.buf)))
		switch e {
		case 0:
			c.r.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if c.noWait {
				c.r.err = e
				return true
			}
			return false // the poller waits for data, then calls again
		}
		c.r.err = e
		return true
	}
}

// SetReadNoWait makes Read, while on, fail at once when no data is at
// hand instead of waiting for it, with an error for which IsWouldBlock
// reports true: a net.Error whose Temporary is true, which crypto/tls
// treats as it does a read deadline, keeping a partly read record for the
// next Read. Only the connection's reader may call it, between its Reads.
func (c *Conn) SetReadNoWait(on bool) { c.noWait = on }

// IsWouldBlock reports whether err is a Read's "no data at hand" under
// SetReadNoWait, possibly wrapped (crypto/tls returns it as it is).
func IsWouldBlock(err error) bool { return errors.Is(err, syscall.EAGAIN) }

// Write writes all of b, as (*net.TCPConn).Write does, waiting for the
// socket to drain when it is full and honouring the write deadline.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if c.used.Load() {
		c.cmu.Lock()
		defer c.cmu.Unlock()
		if c.corked {
			c.cbuf = append(c.cbuf, b...)
			return len(b), nil
		}
	}
	return c.writeNow(b)
}

// Cork makes Writes, until Uncork, gather in buf (its length ignored)
// instead of going out: crypto/tls writes every record (16 KiB at most)
// with a write(2) of its own, and a long body written through it in 64 KiB
// pieces goes out in a quarter of the syscalls, and wakes the reader a
// quarter as often, when each piece is written corked.
func (c *Conn) Cork(buf []byte) {
	c.used.Store(true)
	c.cmu.Lock()
	c.corked, c.cbuf = true, buf[:0]
	c.cmu.Unlock()
}

// Uncork writes what the Writes since Cork gathered, in one write when it
// can, and returns what it wrote: the buffer given to Cork, perhaps grown.
func (c *Conn) Uncork() ([]byte, error) {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	buf := c.cbuf
	c.corked, c.cbuf = false, nil
	if len(buf) == 0 {
		return buf, nil
	}
	_, err := c.writeNow(buf)
	return buf, err
}

func (c *Conn) writeNow(b []byte) (int, error) {
	if len(b) > inlineWriteMax {
		// Long enough that another thread running Go code meanwhile pays
		// for the hand-off (a 1 MiB body goes out in 16 KiB TLS records).
		return c.TCPConn.Write(b)
	}
	c.w.buf, c.w.n, c.w.err = b, 0, 0
	err := c.rc.Write(c.w.fn)
	n, errno := c.w.n, c.w.err
	c.w.buf = nil
	switch {
	case err != nil:
		return n, opError(c, "write", err)
	case errno != 0:
		return n, opError(c, "write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

func (c *Conn) write(fd uintptr) bool {
	for c.w.n < len(c.w.buf) {
		rest := c.w.buf[c.w.n:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
		switch e {
		case 0:
			c.w.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the poller waits for room, then calls again
		default:
			c.w.err = e
			return true
		}
	}
	return true
}

// opError reports err as the net package would for op on c: a RawConn's
// own errors (deadline, closed) come as "raw-read"/"raw-write".
func opError(c *Conn, op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op // the RawConn's own, fresh for this error: one allocation, as net's
		return oe
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// inlineWriteMax is the longest write made inline: a request's head, a
// small answer, a TLS record of one.
const inlineWriteMax = 8 << 10

// Listener wraps every accepted *net.TCPConn in a Conn.
type Listener struct{ net.Listener }

// Accept waits for and returns the next connection, wrapped.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
