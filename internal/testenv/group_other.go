//go:build !linux

package testenv

import "syscall"

// childPIDs returns nil outside Linux: only the postmaster is signalled, and
// its backends end when they notice it is gone.
func childPIDs(int) []int { return nil }

// processRunning reports whether process pid exists (zombies included).
func processRunning(pid int) bool { return syscall.Kill(pid, 0) == nil }
