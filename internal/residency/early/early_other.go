//go:build !linux

package early

// Stop does nothing off Linux.
func Stop() {}
