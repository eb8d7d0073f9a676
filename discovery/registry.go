package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Lease timing of the embedded registry.
const (
	// HeartbeatInterval is how often a registered instance refreshes its record.
	HeartbeatInterval = time.Second
	// LeaseTTL is how long a record stays live without a refresh.
	LeaseTTL = 3 * time.Second
	// staleGC is how long an expired record is kept before any reader removes it.
	staleGC = time.Minute
)

// Instance is one registered sidecar. It is the JSON record of the registry.
type Instance struct {
	AppID     string `json:"appID"`
	Namespace string `json:"namespace"`
	// Address is the peer-facing host:port other sidecars dial.
	Address  string `json:"address"`
	PID      int    `json:"pid"`
	Hostname string `json:"hostname"`
	// The remaining fields are informational (metadata endpoint, skein tools).
	HTTPPort    int       `json:"httpPort,omitempty"`
	GRPCPort    int       `json:"grpcPort,omitempty"`
	MetricsPort int       `json:"metricsPort,omitempty"`
	AppPort     int       `json:"appPort,omitempty"`
	Started     time.Time `json:"started"`
	// Weight and Locality come from xDS EDS (load_balancing_weight, the
	// locality's region/zone/sub_zone); 0 and empty elsewhere. Weight 0
	// means 1: both balancers share load in proportion to it. Locality is
	// informational (metadata); no balancer prefers a locality yet.
	Weight   uint32   `json:"weight,omitempty"`
	Locality Locality `json:"locality,omitzero"`
	// Unhealthy marks an instance whose app fails its health checks
	// (--enable-app-health-check): balancers pick it only when no healthy
	// instance is left, as Envoy's panic mode does, so a call still gets
	// its sidecar's own answer ("app is not in a healthy state").
	Unhealthy bool `json:"unhealthy,omitempty"`
}

// Locality is where an instance runs (xDS core.v3.Locality).
type Locality struct {
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	SubZone string `json:"subZone,omitempty"`
}

// ID is the instance's stable name within its app id.
func (in Instance) ID() string {
	return in.Hostname + "-" + strconv.Itoa(in.PID) + "-" + addressInID.Replace(in.Address)
}

// addressInID makes an address fit a file name. Built once: each refresh
// names every instance of every name, and a Replacer's first use builds
// its tables (a 1,000-app mesh made 12,000 of them a second).
var addressInID = strings.NewReplacer(":", "_", "[", "", "]", "")

// Registry is the file-based embedded registry rooted at a directory
// (normally $SKEIN_HOME/registry). It is safe for concurrent use; it holds
// no state beyond the directory.
type Registry struct {
	dir string
	now func() time.Time
}

// NewRegistry returns a registry rooted at dir, creating it (0700) if needed.
func NewRegistry(dir string) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry %s: %w", dir, err)
	}
	return &Registry{dir: dir, now: time.Now}, nil
}

func (r *Registry) appDir(appID, namespace string) string {
	return filepath.Join(r.dir, namespace, appID)
}

// Register writes in's record and returns a Lease that keeps it alive.
func (r *Registry) Register(in Instance) (*Lease, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", in.AppID, err)
	}
	l := &Lease{file: filepath.Join(r.appDir(in.AppID, in.Namespace), in.ID()+".json"), record: b, now: r.now}
	if err := l.write(); err != nil {
		return nil, fmt.Errorf("register %s: %w", in.AppID, err)
	}
	return l, nil
}

// Lookup returns the live instances of appID in namespace. Expired records
// older than a minute are removed on the way. A live record that cannot be
// decoded fails the lookup, with an error naming its file; so does an app
// id without a directory, with ErrNotFound.
func (r *Registry) Lookup(appID, namespace string) ([]Instance, error) {
	dir := r.appDir(appID, namespace)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// Never registered, or the registry was removed under running
		// instances (they write their records again at their next
		// heartbeat): an error, so a resolver keeps the instances it knew
		// rather than dropping them all meanwhile. The last instance to
		// leave removes its record, not the directory, so a departure
		// reads as an empty directory.
		return nil, fmt.Errorf("%w: %s", ErrNotFound, appID)
	}
	if err != nil {
		return nil, fmt.Errorf("lookup %s: %w", appID, err)
	}
	now := r.now()
	var out []Instance
	var corrupt []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		file := filepath.Join(dir, e.Name())
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		age := now.Sub(info.ModTime())
		if age > staleGC {
			_ = os.Remove(file)
			continue
		}
		if age > LeaseTTL {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		var in Instance
		if err := json.Unmarshal(b, &in); err != nil || in.Address == "" {
			// A live record nobody can read: its instance may well be
			// serving. Failing the lookup keeps every caller's last view
			// (the resolver logs this error) rather than dropping the
			// instance; its owner rewrites the record at its next
			// heartbeat (Lease.Renew), and a record nobody renews is
			// skipped above once its lease has run out.
			if err == nil {
				err = errors.New("no address")
			}
			corrupt = append(corrupt, fmt.Errorf("%s: %w", file, err))
			continue
		}
		if !alive(in) {
			// Its process is gone (SIGKILL, crash): don't wait for the lease.
			_ = os.Remove(file)
			continue
		}
		out = append(out, in)
	}
	if corrupt != nil {
		return nil, fmt.Errorf("lookup %s: unreadable records: %w", appID, errors.Join(corrupt...))
	}
	return out, nil
}

// alive reports whether a record's process may still run. Only records whose
// address is on loopback are checked, since only they are surely this host's.
func alive(in Instance) bool {
	ap, err := netip.ParseAddrPort(in.Address)
	if err != nil || !ap.Addr().IsLoopback() || in.PID <= 0 {
		return true
	}
	if h, _ := os.Hostname(); h != in.Hostname {
		return true
	}
	err = syscall.Kill(in.PID, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Lease keeps one registry record alive.
type Lease struct {
	file   string
	record []byte // the JSON record, written again at each renewal
	now    func() time.Time
	// renew and release, when set, replace the file operations: the lease
	// of a remote registry (NewLease).
	renew, release func() error
}

// NewLease returns a lease of a registry other than the embedded one (a
// control plane): Renew calls renew, Release calls release.
func NewLease(renew, release func() error) *Lease {
	return &Lease{renew: renew, release: release}
}

// Renew refreshes the record's lease. It writes the whole record again,
// so that a record (or directory) removed or damaged meanwhile is back at
// the next heartbeat.
func (l *Lease) Renew() error {
	if l.renew != nil {
		return l.renew()
	}
	if err := l.write(); err != nil {
		return fmt.Errorf("renew %s: %w", l.file, err)
	}
	return nil
}

// write writes the record to a temporary file, stamps it with the lease's
// time, and renames it into place: rename is atomic, so readers see the
// whole record or none.
func (l *Lease) write() error {
	if err := os.MkdirAll(filepath.Dir(l.file), 0o700); err != nil {
		return err
	}
	tmp := l.file + ".tmp"
	if err := os.WriteFile(tmp, l.record, 0o600); err != nil {
		return err
	}
	t := l.now()
	if err := os.Chtimes(tmp, t, t); err != nil {
		return err
	}
	return os.Rename(tmp, l.file)
}

// Release removes the record: the instance leaves every caller's rotation
// at their next read.
func (l *Lease) Release() error {
	if l.release != nil {
		return l.release()
	}
	err := os.Remove(l.file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// KeepAlive renews l every HeartbeatInterval until stop is closed, then
// releases it. It logs, but survives, a failed renewal.
func (l *Lease) KeepAlive(stop <-chan struct{}, log *slog.Logger) {
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			if err := l.Release(); err != nil {
				log.Warn("deregister failed", "err", err)
			}
			return
		case <-t.C:
			if err := l.Renew(); err != nil {
				log.Warn("registry renew failed", "err", err)
			}
		}
	}
}
