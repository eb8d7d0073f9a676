package ratelimit

import (
	"math"
	"net/netip"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// MaxRequestsPerSecond bounds a configured rate: far above what one
// sidecar serves, low enough that the token arithmetic stays exact.
const MaxRequestsPerSecond = 1e9

// MaxBurst bounds a configured burst, for the same reason.
const MaxBurst = 1 << 30

// Limit is a token bucket's settings: RequestsPerSecond tokens are added a
// second, up to Burst; a request takes one. Comparable, so a reload can
// tell an unchanged limit (Inherit).
type Limit struct {
	RequestsPerSecond float64
	Burst             int
}

// DefaultBurst is the burst of a limit that names none: the rate's whole
// part, at least 1, as Dapr's middleware.http.ratelimit sets it (tollbooth
// v7 NewLimiter: max(1, int(max))).
func DefaultBurst(rps float64) int {
	if rps >= MaxBurst {
		return MaxBurst
	}
	return max(1, int(rps))
}

// Bucket admits requests at a Limit (golang.org/x/time/rate). It starts
// full. Safe for concurrent use.
type Bucket struct {
	limit Limit
	lim   *rate.Limiter
}

// NewBucket returns a full bucket of l; l must be valid.
func NewBucket(l Limit) *Bucket {
	return &Bucket{limit: l, lim: rate.NewLimiter(rate.Limit(l.RequestsPerSecond), l.Burst)}
}

// Limit returns the bucket's settings.
func (b *Bucket) Limit() Limit { return b.limit }

// Take takes a token at now. Without one it takes nothing and returns
// false and how long until a token is there (for Retry-After).
func (b *Bucket) Take(now time.Time) (ok bool, wait time.Duration) {
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - b.lim.TokensAt(now)
	return false, time.Duration(math.Ceil(missing / b.limit.RequestsPerSecond * float64(time.Second)))
}

// MaxClients is how many client addresses a Clients tracks at most: state
// for more would let a scan of source addresses grow the sidecar without
// bound. The API port listens on loopback unless told otherwise, so a
// sidecar sees a handful; 4096 buckets cost under 1 MiB.
const MaxClients = 4096

// Clients is a bucket per client address, as Dapr's middleware.http.ratelimit
// keeps one per remote IP: IPv4 addresses each, IPv6 ones by /64 prefix
// (tollbooth's CanonicalizeIP), IPv4-mapped IPv6 as IPv4. At most max
// addresses are tracked; past that the least recently seen one is
// forgotten, so a client that comes back after many others starts with a
// full bucket. Safe for concurrent use.
type Clients struct {
	limit   Limit
	buckets *lru.Cache[netip.Addr, *Bucket]
}

// NewClients returns an empty Clients for l (valid) tracking up to max
// addresses (<= 0: MaxClients).
func NewClients(l Limit, max int) *Clients {
	if max <= 0 {
		max = MaxClients
	}
	c, err := lru.New[netip.Addr, *Bucket](max)
	if err != nil {
		panic(err) // only for a size <= 0, excluded above
	}
	return &Clients{limit: l, buckets: c}
}

// Limit returns the settings of every bucket.
func (c *Clients) Limit() Limit { return c.limit }

// Len returns how many addresses are tracked.
func (c *Clients) Len() int { return c.buckets.Len() }

// Take takes a token from addr's bucket at now (Bucket.Take). The zero
// Addr (an address the caller could not read) is one more client.
func (c *Clients) Take(addr netip.Addr, now time.Time) (ok bool, wait time.Duration) {
	key := ClientKey(addr)
	b, found := c.buckets.Get(key)
	if !found {
		nb := NewBucket(c.limit)
		// Two first requests of one client may race here: the first bucket stored wins.
		if prev, had, _ := c.buckets.PeekOrAdd(key, nb); had {
			b = prev
		} else {
			b = nb
		}
	}
	return b.Take(now)
}

// ClientKey is the address addr's requests are counted under: IPv4 (also
// when mapped into IPv6) as it is, IPv6 by its /64 prefix, since one host
// commonly holds a whole /64.
func ClientKey(addr netip.Addr) netip.Addr {
	addr = addr.Unmap()
	if addr.Is6() {
		p, err := addr.WithZone("").Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return addr
}
