package pattern

import (
	"crypto/sha256"
	"io"
)

// block is one period of the pattern: not a multiple of common buffer
// sizes, so misplaced or dropped chunks change the hash.
var block = func() []byte {
	b := make([]byte, 65521) // prime
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}()

// Reader yields n bytes of the pattern.
type Reader struct {
	off, n int64
}

// NewReader returns a reader of the first n bytes of the pattern.
func NewReader(n int64) *Reader { return &Reader{n: n} }

func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if rem := r.n - r.off; int64(len(p)) > rem {
		p = p[:rem]
	}
	total := 0
	for len(p) > 0 {
		i := r.off % int64(len(block))
		c := copy(p, block[i:])
		p = p[c:]
		r.off += int64(c)
		total += c
	}
	return total, nil
}

// Sum returns the SHA-256 of the first n bytes of the pattern.
func Sum(n int64) [32]byte {
	h := sha256.New()
	_, _ = io.Copy(h, NewReader(n))
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}
