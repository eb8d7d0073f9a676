// Command testapp is the app the end-to-end tests put behind sidecars. It
// echoes what it received, streams on demand, and can misbehave on purpose.
//
//	/<anything>        echo: JSON of method, path, query, headers, body size and hash;
//	                   X-Echo-Status sets the status, X-Echo-Header "K: V" adds a header;
//	                   the response's X-Echo-Method names the verb (HEAD has no body)
//	/redirect          307 to /elsewhere
//	/slow?ms=N         answers after N ms
//	/chunks?n=N&gate=G writes N chunks, each after the previous one's gate G-<i> is released
//	/sse?n=N&gate=G    the same as Server-Sent Events
//	/release?gate=G    releases a gate
//	/hold?gate=G       answers only once gate G is released (or after 30 s), sending
//	                   nothing before: a call in flight for as long as the test wants
//	/download?size=N   N bytes of the test pattern (chunked)
//	/upload            reads the body; JSON {"bytes":N,"sha256":"..."}
//	/conn              the caller's address (r.RemoteAddr), to count connections
//	/env               JSON of the APP_* and DAPR_* variables skein run sets
//	/inflight          how many /slow calls are in progress
//	/requests          how many requests (other than these) the app has served
//	/count?key=K       how many requests carrying the header X-Count-Key: K the app
//	                   has received (any path; a request is counted when it arrives)
//	/flaky?fail=N&status=S&sleep=D
//	                   the first N requests of its X-Count-Key wait D (if given; the
//	                   caller going away ends the wait) and answer S (default 500);
//	                   later ones answer 200 at once; the body is the echo JSON
//	/ws                WebSocket echo (subprotocol echo.v1 if asked): every message
//	                   comes back with its type; the text message "close" makes the
//	                   app close (1000 "bye"); ?hello=1 first sends the echo JSON of
//	                   the upgrade request, ?drop=D drops the connection D after the
//	                   upgrade without a closing handshake, ?refuse=1 answers 400
//	                   instead of upgrading; a request not asking to upgrade gets the echo
//	/healthz           200 while healthy (the default), else 500: the target of
//	                   the sidecar's health probes; GET /healthz?count=1 instead
//	                   answers how many probes came
//	/sethealth?ok=0|1  makes /healthz answer 500 or 200
//
// Flags: --port (default $APP_PORT), --name (reported as X-Instance on every
// response), --exit-after D --exit-code C (exit on its own after D),
// --listen-after D (open the port only after D).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/skeinmesh/skein/test/pattern"
)

type echo struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	RawPath  string              `json:"rawPath"`
	Query    string              `json:"query"`
	Host     string              `json:"host"`
	Proto    string              `json:"proto"`
	Header   map[string][]string `json:"header"`
	BodyLen  int64               `json:"bodyLen"`
	BodyHash string              `json:"bodySHA256"`
	Instance string              `json:"instance"`
}

type gates struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (g *gates) get(name string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.m[name]
	if !ok {
		c = make(chan struct{})
		g.m[name] = c
	}
	return c
}

// counters counts requests per X-Count-Key.
type counters struct {
	mu sync.Mutex
	m  map[string]int
}

// inc counts one request for key and returns its ordinal (1 for the first).
func (c *counters) inc(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[key]++
	return c.m[key]
}

func (c *counters) all() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}

func (c *counters) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

// ordinalKey is the context key of a counted request's ordinal.
type ordinalKey struct{}

func main() {
	port := flag.String("port", os.Getenv("APP_PORT"), "port")
	name := flag.String("name", "app", "instance name")
	exitAfter := flag.Duration("exit-after", 0, "exit on its own after this long")
	exitCode := flag.Int("exit-code", 0, "exit code with --exit-after")
	listenAfter := flag.Duration("listen-after", 0, "open the port only after this long")
	flag.Parse()
	if *exitAfter > 0 {
		time.AfterFunc(*exitAfter, func() { os.Exit(*exitCode) })
	}
	g := &gates{m: map[string]chan struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	var slowInFlight atomic.Int64
	mux.HandleFunc("/inflight", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, slowInFlight.Load())
	})
	mux.HandleFunc("/conn", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.RemoteAddr)
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := map[string]string{}
		for _, k := range []string{"APP_ID", "APP_PORT", "APP_PROTOCOL", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT",
			"DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"} {
			if v, ok := os.LookupEnv(k); ok {
				env[k] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(env)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		slowInFlight.Add(1)
		defer slowInFlight.Add(-1)
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			fmt.Fprintf(w, "slept %dms", ms)
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		timer := time.NewTimer(30 * time.Second)
		defer timer.Stop()
		select {
		case <-g.get(r.URL.Query().Get("gate")):
			fmt.Fprint(w, "released")
		case <-r.Context().Done():
		case <-timer.C:
			w.WriteHeader(http.StatusGatewayTimeout)
		}
	})
	mux.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) {
		close(g.get(r.URL.Query().Get("gate")))
	})
	stream := func(sse bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			gate := r.URL.Query().Get("gate")
			if sse {
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("Cache-Control", "no-cache")
			}
			f := w.(http.Flusher)
			for i := range n {
				if i > 0 {
					select {
					case <-g.get(gate + "-" + strconv.Itoa(i)):
					case <-r.Context().Done():
						return
					case <-time.After(30 * time.Second):
						return
					}
				}
				if sse {
					fmt.Fprintf(w, "id: %d\nevent: tick\ndata: event %d\n\n", i, i)
				} else {
					fmt.Fprintf(w, "chunk %d\n", i)
				}
				f.Flush()
			}
		}
	}
	mux.HandleFunc("/chunks", stream(false))
	mux.HandleFunc("/sse", stream(true))
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, pattern.NewReader(size))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
	})
	echoHandler := func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		e := echo{
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery,
			Host: r.Host, Proto: r.Proto, Header: r.Header, BodyLen: n,
			BodyHash: hex.EncodeToString(h.Sum(nil)), Instance: *name,
		}
		for _, kv := range r.Header.Values("X-Echo-Header") {
			if k, v, ok := strings.Cut(kv, ":"); ok {
				w.Header().Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		w.Header().Set("X-Echo-Method", r.Method)
		status := http.StatusOK
		if s, err := strconv.Atoi(r.Header.Get("X-Echo-Status")); err == nil {
			status = s
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(e)
	}
	mux.HandleFunc("/", echoHandler)
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			echoHandler(w, r)
			return
		}
		q := r.URL.Query()
		if q.Get("refuse") != "" {
			http.Error(w, "upgrade refused", http.StatusBadRequest)
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"echo.v1"}})
		if err != nil {
			return // Accept answered the error
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := context.Background() // the request's context ends with this handler anyway
		if d, err := time.ParseDuration(q.Get("drop")); err == nil {
			t := time.AfterFunc(d, func() { _ = c.CloseNow() })
			defer t.Stop()
		}
		if q.Get("hello") != "" {
			b, _ := json.Marshal(echo{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host,
				Proto: r.Proto, Header: r.Header, Instance: *name})
			if err := c.Write(ctx, websocket.MessageText, b); err != nil {
				return
			}
		}
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageText && string(msg) == "close" {
				_ = c.Close(websocket.StatusNormalClosure, "bye")
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
	var sick atomic.Bool // /healthz answers 500
	var probes atomic.Int64
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("count") != "" {
			fmt.Fprint(w, probes.Load())
			return
		}
		probes.Add(1)
		if sick.Load() {
			http.Error(w, "unhealthy", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/sethealth", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("ok") {
		case "1":
			sick.Store(false)
		case "0":
			sick.Store(true)
		default:
			http.Error(w, "want ok=0 or ok=1", http.StatusBadRequest)
		}
	})
	var served atomic.Int64 // requests other than /requests, /count and the health endpoints
	mux.HandleFunc("/requests", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, served.Load())
	})
	counts := &counters{m: map[string]int{}}
	mux.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, counts.get(r.URL.Query().Get("key")))
	})
	mux.HandleFunc("/counts", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(counts.all())
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {} // until the process ends, whatever the caller does
	})
	mux.HandleFunc("/garbage", func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("\x00\x01 this is not HTTP \xff\xfe\r\n\r\n"))
	})
	mux.HandleFunc("/cut", func(w http.ResponseWriter, r *http.Request) {
		size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		_, _ = io.Copy(w, pattern.NewReader(size/2))
		_ = http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // net/http drops the connection, the body unfinished
	})
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		fail, _ := strconv.Atoi(q.Get("fail"))
		n, _ := r.Context().Value(ordinalKey{}).(int)
		status := http.StatusOK
		if n <= fail {
			status = http.StatusInternalServerError
			if s, err := strconv.Atoi(q.Get("status")); err == nil {
				status = s
			}
			if d, err := time.ParseDuration(q.Get("sleep")); err == nil {
				select {
				case <-time.After(d):
				case <-r.Context().Done():
					return
				}
			}
		}
		h := sha256.New()
		size, _ := io.Copy(h, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(echo{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Host: r.Host, Proto: r.Proto, Header: r.Header, BodyLen: size,
			BodyHash: hex.EncodeToString(h.Sum(nil)), Instance: *name})
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/requests", "/count", "/counts", "/healthz", "/sethealth":
		default:
			served.Add(1)
		}
		if k := r.Header.Get("X-Count-Key"); k != "" {
			r = r.WithContext(context.WithValue(r.Context(), ordinalKey{}, counts.inc(k)))
		}
		w.Header().Set("X-Instance", *name)
		mux.ServeHTTP(w, r)
	})
	time.Sleep(*listenAfter)
	ln, err := net.Listen("tcp", "127.0.0.1:"+*port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: handler, Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}
