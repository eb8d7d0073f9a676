package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/skeinmesh/skein/inject"
)

// cmdInject runs `skein inject -f FILE|-`: the pods and pod templates of a
// manifest that carry dapr.io/enabled get the Skein sidecar, as the
// webhook would add it; the manifest goes to stdout, what was done and
// the warnings to stderr (docs/kubernetes.md).
func cmdInject(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inject", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var files stringList
	var opts inject.Options
	fs.Var(&files, "f", "manifest file to inject, - for stdin (repeatable)")
	fs.Var(&files, "filename", "alias of -f")
	addInjectorFlags(fs, "", &opts)
	if err := fs.Parse(args); err != nil {
		return flagError(fs, "inject", err, stdout, stderr)
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if len(files) == 0 {
		errs = append(errs, errors.New("-f: required (a file, or - for stdin)"))
	}
	in, err := inject.New(opts)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "skein inject: %v\n", oneLine(err))
		return 2
	}
	var out bytes.Buffer // written only once every file injected
	failed := false
	for i, name := range files {
		if i > 0 {
			out.WriteString("---\n")
		}
		r, closeFn, err := openManifest(name, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "skein inject: %v\n", err)
			failed = true
			continue
		}
		docs, err := in.Manifest(&out, r)
		closeFn()
		report(stderr, name, docs)
		if err != nil {
			for _, e := range splitJoined(err) {
				fmt.Fprintf(stderr, "skein inject: %s: %v\n", name, e)
			}
			failed = true
		}
	}
	if failed {
		return 1
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		fmt.Fprintf(stderr, "skein inject: %v\n", err)
		return 1
	}
	return 0
}

// addInjectorFlags registers the injector's settings on fs, each name
// after prefix (the control plane's are --webhook-...).
func addInjectorFlags(fs *flag.FlagSet, prefix string, o *inject.Options) {
	fs.StringVar(&o.Image, prefix+"sidecar-image", inject.ImageRepository+":"+version, "the sidecar's image, unless a pod's dapr.io/sidecar-image says otherwise")
	fs.Func(prefix+"image-pull-policy", "the sidecar's imagePullPolicy: Always, IfNotPresent or Never (default: Kubernetes')", func(s string) error {
		o.ImagePullPolicy = corev1.PullPolicy(s)
		return nil
	})
	fs.StringVar(&o.ControlPlaneAddress, prefix+"control-plane-address", inject.DefaultControlPlaneAddress, "HOST:PORT of skein control-plane (its Service) for the sidecars' --control-plane-address (empty: none)")
	fs.StringVar(&o.JoinTokenSecret, prefix+"join-token-secret", inject.DefaultJoinTokenSecret, "Secret in each pod's namespace whose key \"token\" is the sidecars' join token (empty: none)")
}

// openManifest opens a file, or stdin for "-".
func openManifest(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: is a directory", name)
	}
	return f, func() { f.Close() }, nil
}

// report says what was injected, skipped, or warned about, one line each,
// as `linkerd inject` does.
func report(w io.Writer, file string, docs []inject.Document) {
	for _, d := range docs {
		what := strings.ToLower(d.Kind) + " " + fmt.Sprintf("%q", d.Name)
		switch {
		case d.Plan.Injected():
			fmt.Fprintf(w, "%s injected (app id %s)\n", what, d.Plan.AppID)
		default:
			fmt.Fprintf(w, "%s skipped: %s\n", what, d.Plan.Skip)
		}
		for _, warn := range d.Plan.Warnings {
			fmt.Fprintf(w, "skein inject: %s: %s: warning: %s\n", file, d, warn)
		}
	}
}

// splitJoined lists the errors of an errors.Join, one per line.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
