package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// cmdBackend serves a fixed body of -size bytes on every path until SIGTERM
// or SIGINT: the app behind every scenario. With -delay it is a slow app:
// each request takes that long, and with -workers at most that many are
// served at once, the rest waiting their turn (a thread pool's queue), so
// it serves workers/delay requests a second at most.
func cmdBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	size := fs.Int("size", 1024, "response body size in bytes")
	delay := fs.Duration("delay", 0, "time each request takes (0: none)")
	workers := fs.Int("workers", 0, "requests served at once, the rest queue (0: unlimited)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *delay < 0 || *workers < 0 {
		return errors.New("-delay and -workers must not be negative")
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	h := fixedBody(*size)
	if *delay > 0 || *workers > 0 {
		h = slow(h, *delay, *workers)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// fixedBody answers every request with size bytes and a Content-Length, after
// draining the request body so the connection stays reusable.
func fixedBody(size int) http.Handler {
	body := bytes.Repeat([]byte("skein-bench-1KiB"), size/16+1)[:size]
	length := []string{strconv.Itoa(size)}
	ctype := []string{"application/octet-stream"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = ctype
		h["Content-Length"] = length
		_, _ = w.Write(body)
	})
}

// slow makes next take delay, with at most workers requests at a time
// (0: any number); a request waits for a worker in arrival order, as far
// as the Go scheduler keeps it, and gives up when its client goes away.
func slow(next http.Handler, delay time.Duration, workers int) http.Handler {
	var sem chan struct{}
	if workers > 0 {
		sem = make(chan struct{}, workers)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sem != nil {
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-r.Context().Done():
				return
			}
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// cmdPorts prints n distinct free loopback ports. They are all held open
// until every one is chosen, so they differ; another process may still take
// one before the caller binds it.
func cmdPorts(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ports", flag.ContinueOnError)
	n := fs.Int("n", 1, "how many ports")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lns := make([]net.Listener, 0, *n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range *n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		fmt.Fprintln(stdout, ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// cmdWait polls a URL every 100 ms until it answers 200 (and, with
// -expect-bytes, that many body bytes) or -timeout passes.
func cmdWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	url := fs.String("url", "", "URL to poll")
	timeout := fs.Duration("timeout", 20*time.Second, "give up after")
	expect := fs.Int64("expect-bytes", -1, "required body size (-1: any)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(*timeout)
	var last error
	for time.Now().Before(deadline) {
		resp, err := client.Get(*url)
		if err == nil {
			n, rerr := io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("status %d", resp.StatusCode)
			case *expect >= 0 && n != *expect:
				err = fmt.Errorf("body %d bytes, want %d", n, *expect)
			default:
				return nil
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v: %v", *url, *timeout, last)
}
