// Package harness starts the real parts of an end-to-end test as processes
// on 127.0.0.1: the `skein` binary (sidecars, the control plane), the test
// app (test/testapp), each with a private $SKEIN_HOME per simulated machine,
// and reads what they expose (health, /v1.0/metadata, /metrics).
//
// It is the importable form of the helpers package test keeps in
// harness_test.go, for test packages of their own (test/faults). Its parts:
//
//   - Build compiles the binaries once per test process (TestMain);
//   - Mesh is one machine: Start runs a process, App a test app, Sidecar a
//     ready `skein sidecar`, ControlPlane a `skein control-plane`;
//   - Load drives steady calls (GETs and counted POSTs) and Load.Stop
//     returns their outcomes by count; Duplicates checks with the apps'
//     own counts that no POST reached an app twice;
//   - Usage reads a sidecar's goroutines and open fds from its Prometheus
//     port, and Settles waits for them to come back near a baseline.
//
// Everything a Mesh starts is killed when its test ends, and its output is
// printed if the test failed. Assertions are by counts; waits are bounded.
package harness
