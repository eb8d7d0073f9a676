package controlplane

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
)

// InstancesPath is the registry endpoint: PUT registers or renews an
// instance (a discovery.Instance as JSON), DELETE removes it; both need
// "Authorization: Bearer <join token>".
const InstancesPath = "/v1/instances"

// StatusPath serves the control plane's state as JSON: config version and
// last rejected change, nodes, live instances.
const StatusPath = "/v1/status"

// RegisterResponse is the answer to a registration.
type RegisterResponse struct {
	// LeaseSeconds is how long the registration lives without a renewal.
	LeaseSeconds float64 `json:"leaseSeconds"`
}

// Status is what StatusPath serves.
type Status struct {
	ConfigVersion string           `json:"configVersion"`
	ConfigError   string           `json:"configError,omitempty"`
	TrustDomain   string           `json:"trustDomain"`
	Nodes         []string         `json:"nodes"`
	Instances     []StatusInstance `json:"instances"`
	// ClusterInstances are the Dapr pods of the cluster (Options.Cluster).
	ClusterInstances []StatusInstance `json:"clusterInstances,omitempty"`
	// Replica is this replica's identity in the leader election, Leader
	// the Lease's holder as last seen, Leading whether that is this one
	// (Options.Election).
	Replica string `json:"replica,omitempty"`
	Leader  string `json:"leader,omitempty"`
	Leading bool   `json:"leading,omitempty"`
}

// StatusInstance is one live registration.
type StatusInstance struct {
	AppID     string    `json:"appId"`
	Namespace string    `json:"namespace"`
	Address   string    `json:"address"`
	ID        string    `json:"id"`
	Expires   time.Time `json:"expires,omitzero"`
	Health    string    `json:"health,omitempty"`
}

// Handler is the control plane's HTTPS handler: gRPC (ADS) by content
// type, else the registry, the signing endpoint and the status.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT "+InstancesPath, s.authorized(s.register))
	mux.HandleFunc("DELETE "+InstancesPath, s.authorized(s.deregister))
	mux.HandleFunc("POST "+identity.SignPath, s.sign) // authenticates the request itself
	mux.HandleFunc("GET "+StatusPath, s.status)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			s.grpc.ServeHTTP(w, r)
			return
		}
		if r.TLS == nil {
			writeError(w, http.StatusForbidden, "the registry and the CA are served over TLS only")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// authorized refuses a request without an accepted join token with 401.
// The token is never logged.
func (s *Server) authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !s.tokenOK(tok) {
			s.log.Warn("request refused: join token missing or not accepted", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "join token missing or not accepted")
			return
		}
		next(w, r)
	}
}

// tokenOK compares in constant time against every accepted token.
func (s *Server) tokenOK(tok string) bool {
	if tok == "" {
		return false
	}
	h := sha256.Sum256([]byte(tok))
	ok := 0
	for _, t := range s.tokens {
		ok |= subtle.ConstantTimeCompare(h[:], t[:])
	}
	return ok == 1
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(identity.SignError{Error: msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// decodeInstance reads and checks a registration body.
func decodeInstance(r *http.Request) (discovery.Instance, netip.AddrPort, error) {
	var in discovery.Instance
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
		return in, netip.AddrPort{}, fmt.Errorf("body: %w", err)
	}
	if in.Namespace == "" {
		in.Namespace = "default"
	}
	if in.AppID == "" || strings.ContainsAny(in.AppID, "./ ") || strings.ContainsAny(in.Namespace, "./ ") {
		return in, netip.AddrPort{}, fmt.Errorf("appID %q / namespace %q: want names without dots, slashes or spaces", in.AppID, in.Namespace)
	}
	ap, err := netip.ParseAddrPort(in.Address)
	if err != nil {
		return in, netip.AddrPort{}, fmt.Errorf("address %q: want ip:port", in.Address)
	}
	return in, ap, nil
}

func regID(in discovery.Instance) string { return in.Namespace + "/" + in.AppID + "/" + in.ID() }

// register adds or renews an instance; a new or moved one, or one whose
// health changed, rebuilds the snapshots at once.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	in, ap, err := decodeInstance(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	k := appKey{in.AppID, in.Namespace}
	id := regID(in)
	s.mu.Lock()
	old := s.regs[id]
	health := corev3.HealthStatus_HEALTHY
	if in.Unhealthy { // its app fails its health checks: EDS says so
		health = corev3.HealthStatus_UNHEALTHY
	}
	inst := instance{addr: ap, id: in.ID(), health: health}
	s.regs[id] = &registration{key: k, expires: time.Now().Add(s.opts.LeaseTTL), inst: inst}
	if _, ok := s.nodes[k.nodeID()]; !ok {
		s.nodes[k.nodeID()] = k
	}
	s.mu.Unlock()
	switch {
	case old == nil || old.inst.addr != ap:
		s.log.Info("instance registered", "app_id", in.AppID, "namespace", in.Namespace, "address", in.Address, "instance", in.ID())
		s.trigger()
	case old.inst != inst: // a renewal that changes the health EDS reports
		s.log.Info("instance health changed", "app_id", in.AppID, "namespace", in.Namespace, "instance", in.ID(), "health", health.String())
		s.trigger()
	}
	writeJSON(w, RegisterResponse{LeaseSeconds: s.opts.LeaseTTL.Seconds()})
}

// deregister removes an instance at once (a clean stop).
func (s *Server) deregister(w http.ResponseWriter, r *http.Request) {
	in, _, err := decodeInstance(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id := regID(in)
	s.mu.Lock()
	_, ok := s.regs[id]
	delete(s.regs, id)
	s.mu.Unlock()
	if ok {
		s.log.Info("instance deregistered", "app_id", in.AppID, "namespace", in.Namespace, "instance", in.ID())
		s.trigger()
	}
	w.WriteHeader(http.StatusNoContent)
}

// sign issues an SVID for a CSR: 400 for a malformed request, 401 without
// an accepted credential, 403 for a SPIFFE ID the CA does not issue or
// that the service-account token does not prove, 503 when the token could
// not be checked.
func (s *Server) sign(w http.ResponseWriter, r *http.Request) {
	var req identity.SignRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	id, err := spiffeid.FromString(req.SPIFFEID)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("spiffeId %q: %v", req.SPIFFEID, err))
		return
	}
	who, ok := s.signer(w, r, &req, id)
	if !ok {
		return
	}
	blk, _ := pem.Decode([]byte(req.CSR))
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		s.log.Warn("signing refused", "spiffe_id", id.String(), "remote", r.RemoteAddr, "err", "csr is not a PEM CERTIFICATE REQUEST")
		writeError(w, http.StatusBadRequest, "csr: not a PEM CERTIFICATE REQUEST")
		return
	}
	chain, err := s.ca.SignCSR(blk.Bytes, id, s.opts.SVIDTTL, time.Minute)
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, identity.ErrBadCSR):
			code = http.StatusBadRequest
		case errors.Is(err, identity.ErrWrongID):
			code = http.StatusForbidden
		}
		s.log.Warn("signing refused", "spiffe_id", id.String(), "remote", r.RemoteAddr, "err", err)
		writeError(w, code, err.Error())
		return
	}
	s.log.Info("svid signed", append([]any{"spiffe_id", id.String(), "expires", chain[0].NotAfter, "remote", r.RemoteAddr}, who...)...)
	writeJSON(w, identity.SignResponse{
		Chain:       string(identity.CertsPEM(chain...)),
		Bundle:      string(identity.CertsPEM(s.ca.Roots()...)),
		TrustDomain: s.TrustDomain().Name(),
	})
}

// signer decides whether the request may have id signed, and answers it
// when not. A service-account token, when the control plane has an
// Attester, decides alone: a refused one is never rescued by a join token.
// Without one, a join token decides, unless an Attester requires the
// token. who is what the credential proved, for the log. No token is ever
// logged.
func (s *Server) signer(w http.ResponseWriter, r *http.Request, req *identity.SignRequest, id spiffeid.ID) (who []any, ok bool) {
	joinOK := func() bool {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		return ok && s.tokenOK(tok)
	}
	switch a := s.opts.Attester; {
	case a != nil && req.KubernetesToken != "":
		ns, app, err := appOf(id, s.TrustDomain())
		if err != nil {
			s.log.Warn("svid refused", "spiffe_id", id.String(), "remote", r.RemoteAddr, "err", err)
			writeError(w, http.StatusForbidden, err.Error())
			return nil, false
		}
		wl, err := a.Attest(r.Context(), req.KubernetesToken, ns, app)
		who = wl.logAttrs()
		if errors.Is(err, ErrNotAttested) {
			s.log.Warn("svid refused: the service-account token does not prove the pod runs this app",
				append([]any{"spiffe_id", id.String(), "remote", r.RemoteAddr, "reason", err}, who...)...)
			writeError(w, http.StatusForbidden, err.Error())
			return nil, false
		}
		if err != nil {
			s.log.Warn("svid not signed: the service-account token could not be checked",
				append([]any{"spiffe_id", id.String(), "remote", r.RemoteAddr, "err", err}, who...)...)
			writeError(w, http.StatusServiceUnavailable, "the service-account token could not be checked: "+err.Error())
			return nil, false
		}
		return who, true
	case a == nil || s.opts.JoinTokenSVIDs:
		if !joinOK() {
			s.log.Warn("request refused: join token missing or not accepted", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, "join token missing or not accepted")
			return nil, false
		}
		return []any{"credential", "join token"}, true
	}
	s.log.Warn("svid refused: no service-account token (join tokens sign only with --allow-join-token-svids)",
		"spiffe_id", id.String(), "remote", r.RemoteAddr, "join_token", joinOK())
	writeError(w, http.StatusUnauthorized, "a Kubernetes service-account token is required (the sidecar's --kubernetes-token-file): "+
		"this control plane signs SVIDs only for pods it can verify, not for a join token alone")
	return nil, false
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	st := Status{ConfigVersion: s.cfg.version, TrustDomain: s.TrustDomain().Name(), Nodes: []string{}, Instances: []StatusInstance{}}
	if s.cfgErr != nil {
		st.ConfigError = s.cfgErr.Error()
	}
	for id := range s.nodes {
		st.Nodes = append(st.Nodes, id)
	}
	for _, r := range s.regs {
		st.Instances = append(st.Instances, StatusInstance{AppID: r.key.app, Namespace: r.key.ns, Address: r.inst.addr.String(), ID: r.inst.id, Expires: r.expires})
	}
	for k, list := range s.cfg.cluster {
		for _, in := range list {
			st.ClusterInstances = append(st.ClusterInstances, StatusInstance{AppID: k.app, Namespace: k.ns, Address: in.addr.String(), ID: in.id, Health: in.health.String()})
		}
	}
	s.mu.Unlock()
	if e := s.opts.Election; e != nil {
		st.Replica, st.Leader, st.Leading = e.Identity(), e.Leader(), e.Leading()
	}
	sort.Strings(st.Nodes)
	sort.Slice(st.Instances, func(i, j int) bool { return st.Instances[i].ID < st.Instances[j].ID })
	sort.Slice(st.ClusterInstances, func(i, j int) bool {
		a, b := st.ClusterInstances[i], st.ClusterInstances[j]
		return a.Namespace+"/"+a.ID < b.Namespace+"/"+b.ID
	})
	writeJSON(w, st)
}

// staticToInstance turns an Endpoints entry into an instance.
func staticToInstance(in staticInstance) instance {
	h := corev3.HealthStatus_HEALTHY
	switch in.Health {
	case "unhealthy":
		h = corev3.HealthStatus_UNHEALTHY
	case "draining":
		h = corev3.HealthStatus_DRAINING
	}
	return instance{
		addr: netip.MustParseAddrPort(in.Address), id: cmpOr(in.ID, in.Address), weight: in.Weight,
		region: in.Locality.Region, zone: in.Locality.Zone, subZone: in.Locality.SubZone, health: h,
	}
}
