package resiliency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// DefaultMaxReplayBody is the largest fixed-length body Retry buffers for
// replay.
const DefaultMaxReplayBody = 1 << 20

// RetryOption configures Retry.
type RetryOption func(*retryConfig)

type retryConfig struct {
	budgets *Budgets
	metrics *Metrics
	maxBody int64
	rnd     func() float64
}

// WithBudgets caps retries with the per-target budgets bs.
func WithBudgets(bs *Budgets) RetryOption { return func(c *retryConfig) { c.budgets = bs } }

// WithMetrics records the dapr_resiliency_* metrics of retries in m.
func WithMetrics(m *Metrics) RetryOption { return func(c *retryConfig) { c.metrics = m } }

// WithMaxReplayBody sets the largest fixed-length body buffered for replay
// (default DefaultMaxReplayBody); 0 buffers none.
func WithMaxReplayBody(n int64) RetryOption { return func(c *retryConfig) { c.maxBody = n } }

// Retry is the retry layer (contract §5.4), outermost of the three so that
// the breaker counts and the timeout bounds every attempt. For a request
// whose policy (policyOf) has a Retry it retries errors the policy matches:
// transport errors (except ErrCircuitOpen, ErrTooManyRequests and the
// client's own faults, such as a malformed request body, which stop at
// once) and HTTP statuses per RetryPolicy.RetryHTTP, up to MaxRetries,
// waiting per the policy's Backoff and honouring the request's context.
// The final result is the last attempt's; the bodies of discarded
// responses are closed.
//
// Only replayable requests are retried: no body, req.GetBody set, or a
// fixed-length body no larger than the replay bound, which Retry buffers.
// Chunked (ContentLength -1) and larger bodies get one attempt (contract
// §1.8). With WithBudgets, each request is recorded in its target's budget
// and each retry must be allowed by it.
func Retry(policyOf func(*http.Request) Policy, opts ...RetryOption) func(http.RoundTripper) http.RoundTripper {
	cfg := retryConfig{maxBody: DefaultMaxReplayBody}
	for _, o := range opts {
		o(&cfg)
	}
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			p := policyOf(req)
			budget := cfg.budgets.ForConfig(p.Target, p.Budget)
			if budget != nil {
				budget.Record()
			}
			rp := p.Retry
			if rp == nil || rp.MaxRetries == 0 {
				return next.RoundTrip(req)
			}
			var getBody func() (io.ReadCloser, error)
			var replayOK func() bool // nil: always, once getBody is set
			if g := grpcReplayable(req, cfg.maxBody); g != nil {
				getBody, replayOK = g.next, g.replayable
			} else {
				var err error
				if getBody, err = replayable(req, cfg.maxBody); err != nil {
					return nil, err
				}
			}
			if getBody == nil {
				return next.RoundTrip(req)
			}
			cfg.metrics.policyUsed(&p, policyRetry, "")
			return retry(req, next, &p, getBody, replayOK, budget, &cfg)
		})
	}
}

func retry(req *http.Request, next http.RoundTripper, p *Policy, getBody func() (io.ReadCloser, error), replayOK func() bool, budget *Budget, cfg *retryConfig) (*http.Response, error) {
	ctx := req.Context()
	rp := p.Retry
	bo := rp.NewBackoff(cfg.rnd, nil)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for attempt := 0; ; attempt++ {
		r := req
		if attempt > 0 || req.GetBody == nil && req.Body != nil && req.Body != http.NoBody {
			body, err := getBody()
			if err != nil {
				return nil, fmt.Errorf("replay body: %w", err)
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := next.RoundTrip(r)
		if !shouldRetry(ctx, rp, resp, err) || rp.MaxRetries >= 0 && attempt >= rp.MaxRetries || replayOK != nil && !replayOK() {
			return resp, err
		}
		delay, ok := bo.Next()
		if !ok || budget != nil && !budget.Allow() {
			return resp, err
		}
		if resp != nil {
			// Let the connection be reused, but never read much.
			_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
			resp.Body.Close()
		}
		if timer == nil {
			timer = time.NewTimer(delay)
		} else {
			timer.Reset(delay)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
		}
		cfg.metrics.activated(p, policyRetry, "")
	}
}

// shouldRetry reports whether an attempt's outcome is a retry candidate.
func shouldRetry(ctx context.Context, rp *RetryPolicy, resp *http.Response, err error) bool {
	if err != nil {
		if errors.Is(err, ErrCircuitOpen) || errors.Is(err, ErrTooManyRequests) || ctx.Err() != nil || isClientFault(err) || isOverloaded(err) {
			return false
		}
		return true
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The connection now carries another protocol and belongs to the
		// caller: no answer to discard, nothing to send again.
		return false
	}
	if code, isGRPC, ok := grpcStatus(resp); isGRPC {
		// A proxied gRPC call: its status, when it failed before any
		// message; matched against gRPCStatusCodes (contract §5.4).
		return ok && rp.RetryGRPC(code)
	}
	return rp.RetryHTTP(resp.StatusCode)
}

// replayable returns how to get a fresh copy of req's body for each
// attempt, or nil if req cannot be replayed. A fixed-length body of at
// most max bytes is read into memory (and req.Body closed).
func replayable(req *http.Request, max int64) (func() (io.ReadCloser, error), error) {
	switch {
	case req.Body == nil || req.Body == http.NoBody:
		return func() (io.ReadCloser, error) { return http.NoBody, nil }, nil
	case req.GetBody != nil:
		return req.GetBody, nil
	case req.ContentLength <= 0 || req.ContentLength > max:
		// Unknown length (chunked) or too large: never retried (§1.8).
		return nil, nil
	}
	buf := make([]byte, req.ContentLength)
	_, err := io.ReadFull(req.Body, buf)
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }, nil
}
