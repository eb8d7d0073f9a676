package main

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestWaitStopped: a stopping sidecar's error is passed on; one that does
// not stop is given up on after its grace period plus shutdownAllowance.
func TestWaitStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		done := make(chan error, 1)
		start := time.Now()
		if stopped, err := waitStopped(done, 3*time.Second); stopped || err != nil {
			t.Errorf("waitStopped = %v, %v; want false, nil", stopped, err)
		}
		if waited, want := time.Since(start), 3*time.Second+shutdownAllowance; waited != want {
			t.Errorf("gave up after %s, want %s", waited, want)
		}
		failed := errors.New("failed")
		done <- failed
		if stopped, err := waitStopped(done, 3*time.Second); !stopped || !errors.Is(err, failed) {
			t.Errorf("waitStopped = %v, %v; want true, %v", stopped, err, failed)
		}
	})
}
