package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Errors of SignCSR, so a signing service can answer each with its status.
var (
	// ErrBadCSR means the request is not a well-formed, self-signed PKCS#10
	// certificate request.
	ErrBadCSR = errors.New("malformed certificate request")
	// ErrWrongID means the request asks for a SPIFFE ID the CA does not issue
	// to it: another trust domain, a path other than /ns/<ns>/<app-id>, or a
	// URI SAN that is not the ID asked for.
	ErrWrongID = errors.New("spiffe id refused")
)

// ControlPlaneID is the SPIFFE ID of the control plane's own serving
// certificate. SignCSR never issues it: it is not an app's ID.
func ControlPlaneID(td spiffeid.TrustDomain) spiffeid.ID {
	id, _ := spiffeid.FromSegments(td, "skein", "control-plane")
	return id
}

// SignCSR issues an X.509-SVID for id from a DER PKCS#10 request whose
// signature proves possession of its key: the request must carry exactly
// one URI SAN, id; id must be an app's ID (spiffe://<td>/ns/<ns>/<app-id>)
// in the CA's trust domain. The SVID is valid for ttl, back-dated by skew.
// It returns the leaf and the issuer, the chain a peer presents.
func (ca *CA) SignCSR(der []byte, id spiffeid.ID, ttl, skew time.Duration) ([]*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != id.String() {
		return nil, fmt.Errorf("%w: the request's URI SANs %v are not exactly %s", ErrWrongID, csr.URIs, id)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: the request carries DNS, IP or e-mail SANs", ErrWrongID)
	}
	if id.TrustDomain() != ca.TrustDomain() {
		return nil, fmt.Errorf("%w: %s is not in trust domain %s", ErrWrongID, id, ca.TrustDomain())
	}
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(seg) != 3 || seg[0] != "ns" || seg[1] == "" || seg[2] == "" {
		return nil, fmt.Errorf("%w: %s is not spiffe://<trust-domain>/ns/<namespace>/<app-id>", ErrWrongID, id)
	}
	leaf, issuer, err := ca.sign(id, csr.PublicKey, ttl, skew)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{leaf, issuer}, nil
}
