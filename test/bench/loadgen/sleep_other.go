//go:build !linux

package main

import "time"

func preciseSleepSetup() {}

// sleepUntil falls back to a Go timer, which may wake up to a millisecond
// late; the benchmark's /proc sampling needs Linux anyway.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
