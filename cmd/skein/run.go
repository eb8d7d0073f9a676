package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skeinmesh/skein/proxy"
)

// appStopTimeout is how long skein run waits for the app after forwarding a
// signal before killing it.
const appStopTimeout = 10 * time.Second

// cmdRun starts a sidecar and the app as a child process. On SIGINT/SIGTERM
// the sidecar deregisters and drains its calls in flight while the app still
// runs, then the signal is forwarded to the app; skein run exits with the
// app's exit code. An app that exits on its own stops the sidecar.
func cmdRun(args []string, stdout, stderr io.Writer) int {
	var f sidecarFlags
	fs := newSidecarFlagSet("run", &f, true)
	if err := fs.Parse(args); err != nil {
		return flagError(fs, "run", err, stdout, stderr)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(stderr, "skein run: no app command given (skein run [flags] -- CMD ARGS)")
		return 2
	}
	if f.appID == "" {
		f.appID = defaultAppID(argv[0])
	}
	sc, log, err := newSidecar(&f, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "skein run: %v\n", oneLine(err))
		return 2
	}
	ports := sc.Ports()

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	cmd.Env = append(os.Environ(), appEnv(&f, ports)...)
	// Own process group: a terminal's Ctrl-C reaches skein only, which drains
	// the sidecar before the app sees the signal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	ctx, stopSidecar := context.WithCancel(context.Background())
	defer stopSidecar()
	sidecarDone := make(chan error, 1)
	go func() { sidecarDone <- sc.Run(ctx) }()

	if err := cmd.Start(); err != nil {
		stopSidecar()
		<-sidecarDone
		fmt.Fprintf(stderr, "skein run: start app: %v\n", err)
		return 1
	}
	log.Info("app started", "pid", cmd.Process.Pid, "command", strings.Join(argv, " "), "http_port", ports.HTTP)
	appDone := make(chan error, 1)
	go func() { appDone <- cmd.Wait() }()

	select {
	case sig := <-sigs:
		log.Info("signal received, draining", "signal", sig.String())
		stopSidecar()
		grace := time.Duration(f.graceSeconds) * time.Second
		if stopped, err := waitStopped(sidecarDone, grace); !stopped {
			log.Error("sidecar did not stop in time; stopping the app", "grace", grace, "allowance", shutdownAllowance)
		} else if err != nil {
			log.Warn("sidecar stopped with error", "err", err)
		}
		_ = cmd.Process.Signal(sig)
		t := time.NewTimer(appStopTimeout)
		defer t.Stop()
		select {
		case err := <-appDone:
			return exitCode(err, stderr, true)
		case <-t.C:
			_ = cmd.Process.Kill()
			fmt.Fprintf(stderr, "skein run: app did not stop within %s after %s; killed\n", appStopTimeout, sig)
			<-appDone
			return 1
		}
	case err := <-appDone:
		stopSidecar()
		<-sidecarDone
		return exitCode(err, stderr, false)
	case err := <-sidecarDone:
		fmt.Fprintf(stderr, "skein run: sidecar failed: %v\n", err)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-appDone
		return 1
	}
}

// exitCode maps the app's end to skein run's exit code, explaining failures.
func exitCode(err error, stderr io.Writer, signalled bool) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		fmt.Fprintf(stderr, "skein run: app: %v\n", err)
		return 1
	}
	if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
		if !signalled {
			fmt.Fprintf(stderr, "skein run: app crashed: killed by signal %s\n", st.Signal())
		}
		return 128 + int(st.Signal())
	}
	code := ee.ExitCode()
	if !signalled {
		fmt.Fprintf(stderr, "skein run: app exited with code %d\n", code)
	}
	return code
}

// appEnv is the environment the app gets (PRODUCT.md, contract §3.3, §9.2).
func appEnv(f *sidecarFlags, p proxy.Ports) []string {
	env := []string{
		"APP_ID=" + f.appID,
		"DAPR_HTTP_PORT=" + strconv.Itoa(p.HTTP),
		"DAPR_GRPC_PORT=" + strconv.Itoa(p.GRPC),
		"DAPR_PORT=" + strconv.Itoa(p.Internal),
		"DAPR_HTTP_ENDPOINT=http://127.0.0.1:" + strconv.Itoa(p.HTTP),
		"DAPR_GRPC_ENDPOINT=127.0.0.1:" + strconv.Itoa(p.GRPC),
	}
	if p.Metrics != 0 {
		env = append(env, "DAPR_METRICS_PORT="+strconv.Itoa(p.Metrics))
	}
	if f.appPort != 0 {
		env = append(env, "APP_PORT="+strconv.Itoa(f.appPort))
	}
	if f.appProtocol != "http" {
		env = append(env, "APP_PROTOCOL="+f.appProtocol)
	}
	if f.appChannelAddress != "127.0.0.1" {
		env = append(env, "APP_CHANNEL_ADDRESS="+f.appChannelAddress)
	}
	return env
}

// defaultAppID derives an app id from the command name when none is given.
func defaultAppID(cmd string) string {
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, filepath.Base(cmd))
	return fmt.Sprintf("%s-%d", strings.Trim(base, "-"), os.Getpid())
}

// freePort returns a free TCP port on loopback for a process about to be
// started. It picks below the kernel's ephemeral range (32768 and up on
// Linux), so the port cannot meanwhile be handed to someone's bind to port 0.
func freePort() int {
	for range 100 {
		p := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	return 0
}
