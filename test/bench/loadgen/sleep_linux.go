package main

import (
	"syscall"
	"time"
)

// preciseSleepSetup lowers the calling thread's timer slack to 1 ns
// (prctl PR_SET_TIMERSLACK; the default is 50 µs). The caller has locked
// its OS thread.
func preciseSleepSetup() {
	const prSetTimerSlack = 29
	_, _, _ = syscall.Syscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
}

// sleepUntil sleeps in nanosleep(2) until t: microsecond-accurate, unlike a
// Go timer.
func sleepUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(int64(d))
		_ = syscall.Nanosleep(&ts, nil) // EINTR: go round again
	}
}
