//go:build linux

package testenv

import "syscall"

// setPdeathsig makes the kernel send SIGKILL to the child when the thread
// that started it dies, which for a Go test binary means when the binary
// exits or crashes (the runtime does not end its threads otherwise).
func setPdeathsig(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
