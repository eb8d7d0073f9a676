package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `skein: a service-mesh data plane compatible with Dapr service invocation

Usage:
  skein sidecar [flags]           run a sidecar beside an app
  skein run [flags] -- CMD ARGS   run an app with its sidecar
  skein demo [--calls N]          start two sample services and call between them
  skein ca init|show|rotate       manage the embedded trust domain under $SKEIN_HOME/ca
  skein policy explain|lint       explain an access decision, or lint a policy, offline
  skein control-plane [flags]     run the reference xDS control plane, registry and CA
  skein inject -f FILE|-          add the sidecar to the Dapr-annotated pods of a manifest
  skein version                   print the version

Run "skein <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "sidecar":
		return cmdSidecar(args[1:], stdout, stderr)
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "policy":
		return cmdPolicy(args[1:], stdout, stderr)
	case "ca":
		return cmdCA(args[1:], stdout, stderr)
	case "control-plane":
		return cmdControlPlane(args[1:], stdout, stderr)
	case "inject":
		return cmdInject(args[1:], os.Stdin, stdout, stderr)
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "demo-app":
		return cmdDemoApp(args[1:], stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "skein", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "skein: unknown command %q (want sidecar, run, demo, ca, policy, control-plane, inject or version)\n", args[0])
	return 2
}
