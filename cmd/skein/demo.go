package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/skeinmesh/skein/examples/checkout"
	"github.com/skeinmesh/skein/examples/orders"
)

// cmdDemo starts the sample services orders and checkout, each under
// `skein run` with its own sidecar, and calls checkout, which calls orders
// through the mesh, until Ctrl-C or --calls calls.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	calls := fs.Int("calls", 0, "stop after this many calls (0: until Ctrl-C)")
	interval := fs.Duration("interval", time.Second, "time between calls")
	if err := fs.Parse(args); err != nil {
		return flagError(fs, "demo", err, stdout, stderr)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "skein demo: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	type svc struct {
		name                   string
		appPort, http, metrics int
		cmd                    *exec.Cmd
	}
	svcs := []*svc{{name: "orders"}, {name: "checkout"}}
	var out sync.Mutex // one writer at a time on stdout
	var wg sync.WaitGroup
	for _, s := range svcs {
		s.appPort, s.http, s.metrics = freePort(), freePort(), freePort()
		s.cmd = exec.Command(self, "run", "--app-id", s.name, "--app-port", strconv.Itoa(s.appPort),
			"--dapr-http-port", strconv.Itoa(s.http), "--metrics-port", strconv.Itoa(s.metrics),
			"--log-level", "warn", "--", self, "demo-app", s.name)
		pr, pw := io.Pipe()
		s.cmd.Stdout, s.cmd.Stderr = pw, pw
		wg.Go(func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				out.Lock()
				fmt.Fprintf(stdout, "  [%s] %s\n", s.name, sc.Text())
				out.Unlock()
			}
		})
		if err := s.cmd.Start(); err != nil {
			fmt.Fprintf(stderr, "skein demo: start %s: %v\n", s.name, err)
			return 1
		}
		defer pw.Close()
	}
	stopAll := func() {
		for _, s := range svcs {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, s := range svcs {
			_ = s.cmd.Wait()
		}
	}
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(stdout, format+"\n", a...)
	}
	say("skein demo: starting orders and checkout, each with its own sidecar (SKEIN_HOME=%s)", skeinHome())
	for _, s := range svcs {
		if err := waitHealthy(ctx, s.http); err != nil {
			say("skein demo: %s's sidecar did not become ready: %v", s.name, err)
			stopAll()
			return 1
		}
		say("  %-8s app on 127.0.0.1:%d, sidecar API http://127.0.0.1:%d, metrics http://127.0.0.1:%d/metrics",
			s.name, s.appPort, s.http, s.metrics)
	}
	co := svcs[1]
	say("\nCalling checkout through its sidecar; checkout calls orders through the mesh:")
	say("  POST http://127.0.0.1:%d/v1.0/invoke/checkout/method/checkout?item=...\n", co.http)
	client := &http.Client{Timeout: 10 * time.Second}
	items := []string{"book", "lamp", "kettle", "chair", "pen"}
	failed := 0
	t := time.NewTicker(*interval)
	defer t.Stop()
	for i := 0; *calls == 0 || i < *calls; i++ {
		item := items[i%len(items)]
		u := fmt.Sprintf("http://127.0.0.1:%d/v1.0/invoke/checkout/method/checkout?item=%s", co.http, item)
		resp, err := client.Post(u, "application/json", nil)
		if err != nil {
			failed++
			say("  call %d: %v", i+1, err)
		} else {
			var res checkout.Result
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var o orders.Order
			if json.Unmarshal(b, &res) == nil && json.Unmarshal(res.Order, &o) == nil && resp.StatusCode == http.StatusOK {
				say("  call %d: checkout → orders %d Created: order #%d %q, orders saw caller %q, trace %s",
					i+1, res.OrdersStatus, o.ID, o.Item, o.CallerID, traceID(res.Traceparent))
			} else {
				failed++
				say("  call %d: status %d: %s", i+1, resp.StatusCode, b)
			}
		}
		if *calls != 0 && i+1 == *calls {
			break
		}
		select {
		case <-ctx.Done():
		case <-t.C:
			continue
		}
		break
	}
	say("\nWhere to look:")
	for _, s := range svcs {
		say("  curl http://127.0.0.1:%d/v1.0/metadata     # %s's sidecar: ports, instances it knows", s.http, s.name)
	}
	say("  curl http://127.0.0.1:%d/metrics            # Prometheus metrics of checkout's sidecar", co.metrics)
	say("  ls %s/registry/default                      # the embedded registry", skeinHome())
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		say("  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 skein demo   # send every trace to a local Jaeger or OTel collector")
	} else {
		say("  traces went to the OTLP endpoint in OTEL_EXPORTER_OTLP_*: look up service \"checkout\" (trace ids above)")
	}
	say("  dashboards/*.json, docs/observability.md  # Grafana dashboards and a Prometheus scrape config for these ports")
	say("\nskein demo: stopping")
	stopAll()
	if failed > 0 {
		say("skein demo: %d calls failed", failed)
		return 1
	}
	return 0
}

func traceID(tp string) string {
	if len(tp) >= 35 {
		return tp[3:35]
	}
	return "-"
}

// waitHealthy polls a sidecar's /v1.0/healthz until 204.
func waitHealthy(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	u := "http://127.0.0.1:" + strconv.Itoa(port) + "/v1.0/healthz"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cmdDemoApp serves one sample service on $APP_PORT until SIGINT/SIGTERM.
func cmdDemoApp(args []string, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "skein demo-app: want orders or checkout")
		return 2
	}
	var h http.Handler
	switch args[0] {
	case "orders":
		h = (&orders.Service{}).Handler()
	case "checkout":
		h = (&checkout.Service{SidecarURL: "http://127.0.0.1:" + os.Getenv("DAPR_HTTP_PORT")}).Handler()
	default:
		fmt.Fprintf(stderr, "skein demo-app: unknown service %q\n", args[0])
		return 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("APP_PORT"))
	if err != nil {
		fmt.Fprintf(stderr, "skein demo-app: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "skein demo-app: %v\n", err)
		return 1
	}
	return 0
}
