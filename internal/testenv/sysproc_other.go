//go:build !linux

package testenv

import "syscall"

// setPdeathsig does nothing outside Linux: there, servers are stopped only by
// tb.Cleanup and may outlive a crashed test binary.
func setPdeathsig(*syscall.SysProcAttr) {}
