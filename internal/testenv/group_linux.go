//go:build linux

package testenv

import (
	"os"
	"strconv"
	"strings"
)

// procStat returns the state and parent PID of process pid from
// /proc/PID/stat, ok false if it does not exist.
func procStat(pid string) (state string, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// childPIDs returns the PIDs of the live children of process pid.
func childPIDs(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if state, ppid, ok := procStat(e.Name()); ok && ppid == pid && state != "Z" && state != "X" {
			out = append(out, c)
		}
	}
	return out
}

// processRunning reports whether process pid exists and is not a zombie
// (dead, waiting to be reaped by whoever inherited it).
func processRunning(pid int) bool {
	state, _, ok := procStat(strconv.Itoa(pid))
	return ok && state != "Z" && state != "X"
}
