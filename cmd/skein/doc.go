// Command skein is Skein's one binary: the sidecar, the app launcher and the
// demo. It only wires packages together; the behaviour lives in them.
package main
