package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/skeinmesh/skein/inject"
)

// webhookFlags are `skein control-plane`'s settings for the sidecar
// injection webhook (inject.Webhook, deploy/helm/skein).
type webhookFlags struct {
	listen, cert, key string
	opts              inject.Options
}

func addWebhookFlags(fs *flag.FlagSet) *webhookFlags {
	w := &webhookFlags{}
	fs.StringVar(&w.listen, "webhook-listen", "", "HOST:PORT to serve the sidecar injection webhook on, HTTPS at /mutate (empty: none)")
	fs.StringVar(&w.cert, "webhook-cert", "", "the webhook's TLS certificate chain (PEM), re-read when it changes")
	fs.StringVar(&w.key, "webhook-key", "", "the webhook's TLS private key (PEM), re-read when it changes")
	addInjectorFlags(fs, "webhook-", &w.opts)
	return w
}

// check validates the flags and loads the certificate once, so a bad one
// fails at start.
func (w *webhookFlags) check() error {
	if w.listen == "" {
		if w.cert != "" || w.key != "" {
			return errors.New("--webhook-cert and --webhook-key: only with --webhook-listen")
		}
		return nil
	}
	var errs []error
	if _, _, err := net.SplitHostPort(w.listen); err != nil {
		errs = append(errs, fmt.Errorf("--webhook-listen: %q: want HOST:PORT", w.listen))
	}
	if w.cert == "" || w.key == "" {
		errs = append(errs, errors.New("--webhook-cert and --webhook-key: required with --webhook-listen"))
	} else if _, err := tls.LoadX509KeyPair(w.cert, w.key); err != nil {
		errs = append(errs, fmt.Errorf("--webhook-cert, --webhook-key: %w", err))
	}
	if _, err := inject.New(w.opts); err != nil {
		errs = append(errs, fmt.Errorf("--webhook-*: %w", err))
	}
	return errors.Join(errs...)
}

// serveWith runs serve (the control plane) and, with --webhook-listen,
// the webhook beside it until ctx ends or either fails; it waits for both
// and returns the first error.
func (w *webhookFlags) serveWith(ctx context.Context, log *slog.Logger, serve func(context.Context) error) error {
	if w.listen == "" {
		return serve(ctx)
	}
	in, err := inject.New(w.opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", w.listen)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	certs := &certFiles{cert: w.cert, key: w.key, log: log}
	if _, err := certs.get(nil); err != nil {
		ln.Close()
		return fmt.Errorf("webhook: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /mutate", inject.NewWebhook(in, log))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusNoContent) })
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer cancel() // the control plane stopped: so does the webhook
		errc <- serve(ctx)
	})
	wg.Go(func() {
		log.Info("injection webhook listening", "address", ln.Addr().String())
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("webhook: %w", err)
			cancel()
			return
		}
		errc <- nil
	})
	<-ctx.Done()
	sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	wg.Wait()
	close(errc)
	var first error
	for err := range errc {
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// certFiles serves a certificate and key from files, loading them again
// when either changes on disk (cert-manager and kubelet rotate mounted
// Secrets in place); a pair that fails to load keeps the last good one.
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu     sync.Mutex
	stamp  [2]time.Time
	loaded *tls.Certificate
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var stamp [2]time.Time
	for i, f := range []string{c.cert, c.key} {
		if st, err := os.Stat(f); err == nil {
			stamp[i] = st.ModTime()
		}
	}
	if c.loaded != nil && stamp == c.stamp {
		return c.loaded, nil
	}
	cert, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		if c.loaded != nil {
			c.log.Warn("webhook certificate not reloaded; the previous one stays", "err", err)
			c.stamp = stamp // once per change, not per handshake
			return c.loaded, nil
		}
		return nil, err
	}
	if c.loaded != nil {
		c.log.Info("webhook certificate reloaded", "cert", c.cert)
	}
	c.loaded, c.stamp = &cert, stamp
	return c.loaded, nil
}
