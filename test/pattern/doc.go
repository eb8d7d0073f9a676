// Package pattern generates the deterministic byte stream the end-to-end
// tests push through sidecars, so both ends can check it without storing it.
package pattern
