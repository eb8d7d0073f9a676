package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/proxy"
)

// cmdPolicy explains and lints access-control policies offline.
//
//	skein policy explain --config FILE --caller spiffe://... --verb POST --path /x
//	skein policy lint --config FILE
func cmdPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "explain" && args[0] != "lint") {
		fmt.Fprintln(stderr, "skein policy: want explain or lint")
		return 2
	}
	sub := args[0]
	fs := flag.NewFlagSet("policy "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("config", "", "Dapr Configuration file")
	caller := fs.String("caller", "", "caller SPIFFE ID (explain); empty: no verified identity")
	verb := fs.String("verb", "GET", "HTTP verb (explain)")
	path := fs.String("path", "/", "operation path as the caller sends it (explain)")
	if err := fs.Parse(args[1:]); err != nil {
		return flagError(fs, "policy "+sub, err, stdout, stderr)
	}
	if *file == "" {
		fmt.Fprintf(stderr, "skein policy %s: --config is required\n", sub)
		return 2
	}
	acl, err := loadACL(*file)
	if err != nil {
		fmt.Fprintf(stderr, "skein policy %s: %v\n", sub, oneLine(err))
		return 1
	}
	if sub == "lint" {
		warnings := access.Lint(acl)
		for _, w := range warnings {
			fmt.Fprintln(stdout, "warning:", w)
		}
		if len(warnings) == 0 {
			fmt.Fprintln(stdout, "no warnings")
			return 0
		}
		return 1
	}
	m, err := access.Compile(acl, true)
	if err != nil {
		fmt.Fprintf(stderr, "skein policy explain: %v\n", oneLine(err))
		return 1
	}
	// The sidecar decides on the normalised method; so does explain.
	op, err := proxy.NormalizeMethod(strings.TrimPrefix(*path, "/"))
	if err != nil {
		fmt.Fprintf(stderr, "skein policy explain: --path: %v\n", err)
		return 2
	}
	req := access.Request{Operation: op, Verb: *verb}
	if *caller != "" {
		id, err := spiffeid.FromString(*caller)
		if err != nil {
			fmt.Fprintf(stderr, "skein policy explain: --caller: %v\n", err)
			return 2
		}
		seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
		if len(seg) != 3 || seg[0] != "ns" {
			fmt.Fprintf(stderr, "skein policy explain: --caller: %s is not spiffe://<td>/ns/<namespace>/<app-id>\n", id)
			return 2
		}
		req.Caller = &access.Caller{TrustDomain: id.TrustDomain().String(), Namespace: seg[1], AppID: seg[2]}
		req.CallerID = id.String()
	}
	d := m.Decide(req)
	fmt.Fprint(stdout, access.Explain(req, d))
	if d.Denied && !d.Allowed {
		return 3
	}
	return 0
}

// loadACL reads spec.accessControl of a Configuration file (nil: none).
func loadACL(file string) (*access.Config, error) {
	cfg, err := proxy.LoadConfig(file, nil)
	if err != nil {
		return nil, err
	}
	return proxy.AccessConfig(cfg)
}
