// Package test holds Skein's end-to-end tests: they build the real skein
// binary and the test app (test/testapp) once, start sidecars and apps as
// separate processes on 127.0.0.1 with a temporary $SKEIN_HOME, and assert
// on what crosses the wire. Benchmarks and load scripts live in test/bench.
package test
